"""GGUF fuzzing: mutated model files through inspect(), quantize() and LlamaServer.start().

    python tests/fuzz/gguf_fuzz.py --cases 6000 --out /tmp/gguf-fuzz            # tiny model
    python tests/fuzz/gguf_fuzz.py --cases 6000 --smollm2-cases 600 --out ...   # + SmolLM2 if cached
    python tests/fuzz/gguf_fuzz.py --replay /tmp/gguf-fuzz/crashers.jsonl        # rerun kept cases

Every case is a spec (gguf_mutate.py) applied to a base model. A worker *child process* runs
the cases one after another: `inspect(path)`, `quantize(path, out, Q8_0, allow_requantize=True)`
and `LlamaServer.start()` with, when it starts, one `/completion` request. Each step ends in
``ok`` or ``typed:<llamaproc.errors class>``; anything else is a failure:

* ``untyped:<class>`` — a Python exception that is not a llamaproc error;
* ``death:<signal>`` — the worker died (the case is kept, a fresh worker takes the next one);
* ``hang`` — the case did not finish within ``--timeout`` s (the worker is killed).

A started server that answers its request with 5xx counts as ``http:<status>`` (the model
loaded but the first decode failed; llamaproc reports it and the server goes FAILED) and is
reported apart: not a death, not a hang, but worth reading. Bytes the worker wrote to its
stderr (the host's stderr: nothing should land there, llamaproc's lines go to `logging`)
are counted per case.

Results: `<out>/results.jsonl` (one line per case), `<out>/summary.json`, and
`<out>/crashers.jsonl` (the specs of every death, hang or untyped error: add them to
`tests/fuzz/gguf_regressions.json`, which tests/test_gguf_fuzz.py replays).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gguf_mutate as gm  # noqa: E402
import gguf_struct as gs  # noqa: E402

STEPS = ("inspect", "quantize", "start")
FAILURE_PREFIXES = ("untyped", "death", "hang")


# ----------------------------------------------------------------------------------------------
# worker (child process)

def _worker_main(workdir: str, result_fd: int, steps: tuple[str, ...], mem_limit_gb: float) -> None:
    import logging
    import resource
    import urllib.error
    import urllib.request

    if mem_limit_gb > 0:  # a runaway allocation fails here instead of taking the machine down
        limit = int(mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = os.fdopen(result_fd, "w", buffering=1)
    # native lines reach the `llamaproc` logger: keep them (not on stderr, which we measure)
    logging.getLogger("llamaproc").addHandler(logging.NullHandler())
    logging.getLogger("llamaproc").propagate = False
    import llamaproc
    from llamaproc import LlamaServer, ServerConfig, errors

    def outcome(fn) -> str:
        try:
            r = fn()
            return r if isinstance(r, str) else "ok"
        except errors.LlamaProcError as e:
            return f"typed:{type(e).__name__}: {str(e)[:240]}"
        except BaseException as e:  # noqa: BLE001 - exactly what the fuzzer is after
            return f"untyped:{type(e).__name__}: {str(e)[:300]}"

    def serve(path: str, timeout: float) -> str:
        # two compute threads: an assertion on one of ggml's worker threads cannot be guarded,
        # so the fuzzer must see the kernels run there, as they do with the default of most hosts
        cfg = ServerConfig(model_path=path, context_size=256, threads=2, parallel=1, batch_size=64)
        # the load gets a third of the case's time: a load that ignores its timeout is a hang
        with LlamaServer.start(cfg, timeout=timeout / 3) as server:
            body = json.dumps({"prompt": "hello world", "n_predict": 4}).encode()
            req = urllib.request.Request(server.url + "/completion", body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    json.load(resp)
                    return "ok"
            except urllib.error.HTTPError as e:
                return f"http:{e.code}"

    dst = os.path.join(workdir, f"quantized-{os.getpid()}.gguf")
    for line in sys.stdin:
        case = json.loads(line)
        path, timeout = case["path"], case["timeout"]
        res: dict[str, Any] = {"id": case["id"]}
        for step in steps:
            out.write(json.dumps({"id": case["id"], "step": step}) + "\n")  # the parent knows where a death was
            t0 = time.perf_counter()
            if step == "inspect":
                res[step] = outcome(lambda: llamaproc.inspect_model(path))
            elif step == "quantize":
                res[step] = outcome(lambda: llamaproc.quantize(path, dst, "Q8_0", allow_requantize=True,
                                                               overwrite=True))
            elif step == "start":
                res[step] = outcome(lambda: serve(path, timeout))
            res[f"{step}_s"] = round(time.perf_counter() - t0, 4)
        try:
            os.unlink(dst)
        except FileNotFoundError:
            pass
        out.write(json.dumps(res) + "\n")


# ----------------------------------------------------------------------------------------------
# parent

class LineReader:
    """Lines from a pipe with a timeout (no buffering behind select's back)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def readline(self, timeout: float) -> str | None:
        """A line; "" at EOF; None when nothing came within `timeout`."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return ""
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        os.close(self.fd)


class Worker:
    """One worker child; restarted after a death or a hang."""

    def __init__(self, workdir: Path, steps: tuple[str, ...], mem_limit_gb: float, tag: str) -> None:
        self.workdir, self.steps, self.mem_limit_gb, self.tag = workdir, steps, mem_limit_gb, tag
        self.proc: subprocess.Popen[str] | None = None
        self.stderr_path = workdir / f"worker-{tag}.stderr"
        self.stderr_bytes = 0
        self.cases_done = 0

    def ensure(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        r, w = os.pipe()
        self.stderr_file = open(self.stderr_path, "ab")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(self.workdir), "--result-fd", str(w),
               "--steps", ",".join(self.steps), "--mem-limit-gb", str(self.mem_limit_gb)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.stderr_file,
                                     pass_fds=(w,), text=True, start_new_session=True)
        os.close(w)
        self.results = LineReader(r)
        self.cases_done = 0

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.kill()
        self.results.close()
        self.stderr_file.close()
        self.proc = None

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        self.results.close()
        self.stderr_file.close()
        self.proc = None

    def run(self, case_id: int, path: Path, timeout: float) -> dict[str, Any]:
        self.ensure()
        assert self.proc is not None and self.proc.stdin is not None
        before = self.stderr_path.stat().st_size
        started = time.monotonic()
        try:
            self.proc.stdin.write(json.dumps({"id": case_id, "path": str(path), "timeout": timeout}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        deadline = started + timeout
        res: dict[str, Any] | None = None
        step = ""
        eof = False
        while res is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            line = self.results.readline(min(left, 1.0))
            if line is None:
                continue
            if not line:
                eof = True
                break
            msg = json.loads(line)
            if "step" in msg:
                step = msg["step"]
            else:
                res = msg
        elapsed = time.monotonic() - started
        if res is not None:
            self.cases_done += 1
        elif eof:
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = None
            sig = signal.Signals(-rc).name if rc is not None and rc < 0 else f"exit {rc}"
            res = {"id": case_id, "death": sig, "step": step}
            self.kill()
        else:
            res = {"id": case_id, "hang": round(elapsed, 1), "step": step}
            self.kill()
        res["stderr_bytes"] = (self.stderr_path.stat().st_size - before) if self.stderr_path.exists() else 0
        res["seconds"] = round(elapsed, 3)
        return res


def verdict(res: dict[str, Any]) -> str:
    """'ok', 'typed', or the failure: 'death:SIG', 'hang', 'untyped:...'."""
    if "death" in res:
        return f"death:{res['death']}:{res.get('step', '')}"
    if "hang" in res:
        return f"hang:{res.get('step', '')}"
    for step in STEPS:
        value = res.get(step, "ok")
        if value.startswith("untyped"):
            return value
    return "ok"


def load_bases(workdir: Path, use_smollm2: bool) -> dict[str, gs.Gguf]:
    from llamaproc.testing import make_tiny_model

    bases = {"tiny": gs.parse(make_tiny_model(workdir / "base-tiny.gguf").read_bytes())}
    if use_smollm2:
        from llamaproc.default_model import DEFAULT_MODEL, cache_dir

        path = cache_dir() / f"{DEFAULT_MODEL.package}-{DEFAULT_MODEL.version}" / DEFAULT_MODEL.filename
        if path.is_file():
            bases["smollm2"] = gs.parse(path.read_bytes())
        else:
            print(f"SmolLM2 not in the cache ({path}): tiny model only", file=sys.stderr)
    return bases


def run_cases(specs: list[dict[str, Any]], bases: dict[str, gs.Gguf], workdir: Path, *, jobs: int,
              timeout: float, steps: tuple[str, ...], mem_limit_gb: float, recycle: int,
              results_path: Path | None = None, progress: bool = True,
              timeouts: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Run every spec; returns one result dict per spec (in order), each with its spec."""
    results: list[dict[str, Any] | None] = [None] * len(specs)
    lock = threading.Lock()
    next_index = [0]
    started = time.monotonic()
    out_file = open(results_path, "a") if results_path else None
    done = [0]

    def shard(tag: str) -> None:
        worker = Worker(workdir, steps, mem_limit_gb, tag)
        path = workdir / f"case-{tag}.gguf"
        try:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= len(specs):
                        return
                    next_index[0] += 1
                spec = specs[i]
                path.write_bytes(gm.apply_any(spec, bases[spec["base"]]))
                t = (timeouts or {}).get(spec["base"], timeout)
                res = worker.run(i, path, t)
                res["spec"] = spec
                res["verdict"] = verdict(res)
                res["size"] = path.stat().st_size
                if worker.cases_done >= recycle:
                    worker.stop()
                with lock:
                    results[i] = res
                    done[0] += 1
                    if out_file:
                        out_file.write(json.dumps(res) + "\n")
                        out_file.flush()
                    if progress and (done[0] % 100 == 0 or res["verdict"] != "ok"):
                        rate = done[0] / max(time.monotonic() - started, 1e-9)
                        flag = "" if res["verdict"] == "ok" else f"  <-- {res['verdict']} {json.dumps(spec)[:200]}"
                        print(f"[{done[0]}/{len(specs)}] {rate:.1f} cases/s{flag}", flush=True)
        finally:
            worker.stop()
            path.unlink(missing_ok=True)

    threads = [threading.Thread(target=shard, args=(str(j),)) for j in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if out_file:
        out_file.close()
    return [r for r in results if r is not None]


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = Counter(r["verdict"].split(":")[0] for r in results)
    per_step: dict[str, Counter[str]] = {s: Counter() for s in STEPS}
    for r in results:
        for s in STEPS:
            if s in r:
                per_step[s][r[s].split(":")[0] + (":" + r[s].split(":")[1] if r[s].startswith(("typed", "http")) else "")] += 1
    return {
        "cases": len(results),
        "by_base": dict(Counter(r["spec"]["base"] for r in results)),
        "by_op": dict(Counter(r["spec"]["op"] for r in results)),
        "deaths": sum(1 for r in results if "death" in r),
        "hangs": sum(1 for r in results if "hang" in r),
        "untyped_errors": sum(1 for r in results if r["verdict"].startswith("untyped")),
        "verdicts": dict(verdicts),
        "steps": {s: dict(c) for s, c in per_step.items() if c},
        "start_ok_request_5xx": sum(1 for r in results if r.get("start", "").startswith("http:5")),
        "cases_writing_stderr": sum(1 for r in results if r.get("stderr_bytes", 0) > 0),
        "stderr_bytes": sum(r.get("stderr_bytes", 0) for r in results),
        "max_case_seconds": max((r.get("seconds", 0) for r in results), default=0),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=5000, help="cases on the tiny generated model")
    p.add_argument("--smollm2-cases", type=int, default=0, help="cases on SmolLM2 (if in the cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="worker processes in parallel")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per case (tiny model)")
    p.add_argument("--smollm2-timeout", type=float, default=240.0, help="seconds per case (SmolLM2)")
    p.add_argument("--steps", default=",".join(STEPS), help="which of inspect,quantize,start to run")
    p.add_argument("--mem-limit-gb", type=float, default=16.0, help="RLIMIT_AS of the worker (0: none)")
    p.add_argument("--recycle", type=int, default=250, help="cases per worker process before a fresh one")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: a temp folder)")
    p.add_argument("--replay", type=Path, default=None, help="run the specs of a .json/.jsonl file instead")
    p.add_argument("--only-op", default=None, help="generate only this op (e.g. field, truncate)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    steps = tuple(s for s in args.steps.split(",") if s)
    if args.worker:
        _worker_main(args.worker, args.result_fd, steps, args.mem_limit_gb)
        return 0

    out = args.out or Path(tempfile.mkdtemp(prefix="gguf-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    workdir = out / "work"
    workdir.mkdir(exist_ok=True)
    bases = load_bases(workdir, use_smollm2=args.smollm2_cases > 0 or args.replay is not None)
    if args.replay:
        text = args.replay.read_text()
        specs = json.loads(text) if args.replay.suffix == ".json" else [json.loads(l) for l in text.splitlines() if l]
        specs = [s.get("spec", s) for s in specs]
        specs = [s for s in specs if s["base"] in bases]
    else:
        specs = gm.generate("tiny", bases["tiny"], args.cases, args.seed)
        if "smollm2" in bases and args.smollm2_cases:
            specs += gm.generate("smollm2", bases["smollm2"], args.smollm2_cases, args.seed)
        if args.only_op:
            specs = [s for s in specs if s["op"] == args.only_op]
    results_path = out / "results.jsonl"
    results_path.unlink(missing_ok=True)
    t0 = time.monotonic()
    print(f"{len(specs)} cases -> {out}", flush=True)
    results = run_cases(specs, bases, workdir, jobs=args.jobs, timeout=args.timeout, steps=steps,
                        mem_limit_gb=args.mem_limit_gb, recycle=args.recycle, results_path=results_path,
                        timeouts={"tiny": args.timeout, "smollm2": args.smollm2_timeout})
    summary = summarize(results)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary["command"] = " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    bad = [r for r in results if r["verdict"] != "ok"]
    with open(out / "crashers.jsonl", "w") as fh:
        for r in bad:
            fh.write(json.dumps(r["spec"]) + "\n")
    print(json.dumps(summary, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
