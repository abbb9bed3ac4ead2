"""llamaproc against its peers on identical workloads, interleaved in one run.

    python benchmarks/bench_peers.py                  # SmolLM2-135M, 3 rounds
    python benchmarks/bench_peers.py --quick --model tiny.gguf --no-upstream   # smoke run

Sides: (a) llamaproc's embedded server; (b) upstream llama-server as a subprocess, built from
the same vendored source the way its users build it (native, OpenMP on), changed only by the
AMX fix (benchmarks/upstream.py builds it into build/ on demand); (c) llama-cpp-python's
server (``python -m llama_cpp.server``) when llama_cpp is importable, else skipped with a note.
Every side gets the same model, threads, slots and context.

Workloads, per round (all sides up at once, each workload run on the sides in turn, the order
reversed every round): start call to ready (/health 200; subprocesses are polled every 10 ms);
single-stream generation (128 tokens, wall clock);
aggregate generation with 1/4/8/16 concurrent clients; time to first token p50/p95 (streamed,
sequential requests); RSS after load. The machine's memory bandwidth is measured in the same
run (2 threads copying 256 MiB buffers) and single-stream speed is reported as a fraction of
the bandwidth roofline (bandwidth / bytes of weights read per token). Output: absolute figures,
ratios to (b), and the targets checked: (a)/(b) >= 0.98 for single-stream and every aggregate,
start-to-ready (a) <= 0.9 x (b), aggregate at 8 clients (a) >= 8 x (c).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import build_upstream  # noqa: E402

from llamaproc import LlamaServer, inspect_model  # noqa: E402
from llamaproc.default_model import fetch_model  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and the sea."


def rss_of(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, max_tokens: int, stream: bool) -> urllib.request.Request:
    body = json.dumps({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True, "stream": stream}).encode()
    return urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})


def chat(url: str, max_tokens: int) -> int:
    with urllib.request.urlopen(_request(url, max_tokens, False), timeout=600) as res:
        return json.load(res)["usage"]["completion_tokens"]


def time_to_first_token(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(_request(url, 16, True), timeout=600) as res:
        for raw in res:
            line = raw.decode().strip()
            if line.startswith("data:") and '"content"' in line and '"content":""' not in line.replace(" ", ""):
                return time.perf_counter() - started
    return time.perf_counter() - started


def generation_rate(url: str, clients: int, max_tokens: int) -> float:
    counts = [0] * clients

    def one(i: int) -> None:
        counts[i] = chat(url, max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def memory_bandwidth(seconds: float = 1.5, mib: int = 256, threads: int = 2) -> float:
    """Bytes/s moved by `threads` threads copying large buffers (read + write counted)."""
    pairs = [(np.ones(mib * 2**18, np.float32), np.empty(mib * 2**18, np.float32)) for _ in range(threads)]
    moved = [0] * threads

    def run(i: int, deadline: float) -> None:
        src, dst = pairs[i]
        while time.perf_counter() < deadline:
            np.copyto(dst, src)
            moved[i] += 2 * src.nbytes

    for i in range(threads):  # touch pages first
        np.copyto(pairs[i][1], pairs[i][0])
    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(i, started + seconds)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(moved) / (time.perf_counter() - started)


def wait_ready(url: str, proc: subprocess.Popen, path: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + path, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited during startup with code {proc.returncode}")
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{proc.args[0]} did not answer {path} within {timeout:g} s")
            time.sleep(0.01)


class Embedded:
    name = "llamaproc"

    def __init__(self, flags: list[str]) -> None:
        self.flags = flags

    def start(self) -> float:
        rss0 = rss_of()
        t0 = time.perf_counter()
        self.server = LlamaServer.from_args(self.flags + ["--port", "0"], use_env=False)
        took = time.perf_counter() - t0
        self.rss = rss_of() - rss0
        self.url = self.server.url
        return took

    def stop(self) -> None:
        self.server.stop()


class Process:
    def __init__(self, name: str, argv: list[str], ready_path: str = "/health") -> None:
        self.name, self.argv, self.ready_path = name, argv, ready_path

    def start(self) -> float:
        port = free_port()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv + ["--port", str(port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_ready(self.url, self.proc, self.ready_path)
        took = time.perf_counter() - t0
        self.rss = rss_of(self.proc.pid)
        return took

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF to serve (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--tokens", type=int)
    parser.add_argument("--clients", help="comma-separated concurrency levels (default 1,4,8,16)")
    parser.add_argument("--ttft-requests", type=int)
    parser.add_argument("--quick", action="store_true", help="1 round, short requests, 1,2 clients")
    parser.add_argument("--no-upstream", action="store_true", help="skip (b)")
    parser.add_argument("--upstream-bin", type=Path, help="use this llama-server binary for (b)")
    parser.add_argument("--no-llama-cpp-python", action="store_true", help="skip (c)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    tokens = args.tokens or (16 if args.quick else 128)
    clients = [int(c) for c in (args.clients or ("1,2" if args.quick else "1,4,8,16")).split(",")]
    ttft_n = args.ttft_requests or (3 if args.quick else 10)

    model = args.model or fetch_model(quiet=True)
    ctx = 4096
    flags = ["-m", str(model), "-t", str(args.threads), "-np", str(args.parallel), "-c", str(ctx), "-kvu",
             "--host", "127.0.0.1"]
    sides: list = [Embedded(flags)]
    notes = []
    if not args.no_upstream:
        binary = args.upstream_bin or build_upstream() / "llama-server"
        sides.append(Process("llama-server", [str(binary), *flags]))
    if args.no_llama_cpp_python:
        pass
    elif importlib.util.find_spec("llama_cpp") is not None:
        # it has no /health: it is ready once /v1/models answers
        sides.append(Process("llama-cpp-python", [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                                                  "--n_threads", str(args.threads), "--n_ctx", str(ctx),
                                                  "--host", "127.0.0.1"], ready_path="/v1/models"))
    else:
        notes.append("(c) llama-cpp-python: skipped, llama_cpp is not installed. Its stock native build dies with "
                     "SIGILL on this CPU (gcc-12/AMX); to include it: CMAKE_ARGS=\"-DCMAKE_CXX_FLAGS=-include "
                     f"{Path(__file__).resolve().parent.parent / 'cmake' / 'ggml_amx_tilecfg_fix.h'}\" "
                     "pip install 'llama-cpp-python[server]==0.3.36'")

    figures: dict[str, dict[str, list[float]]] = {s.name: {} for s in sides}

    def record(side, key: str, value: float) -> None:
        figures[side.name].setdefault(key, []).append(value)

    bandwidths = []
    for rnd in range(rounds):
        bandwidths.append(memory_bandwidth(seconds=0.5 if args.quick else 1.5))
        order = sides if rnd % 2 == 0 else list(reversed(sides))
        # every side is up for the whole round; each workload then runs on the sides in turn, so
        # slow drifts of the machine's speed hit all sides alike
        for side in order:
            record(side, "start_to_ready_s", side.start())
            record(side, "rss_after_load_mib", side.rss / 2**20)
            chat(side.url, 4)  # warm-up
        try:
            for side in order:
                ttfts = sorted(time_to_first_token(side.url) for _ in range(ttft_n))
                record(side, "ttft_p50_ms", 1000 * float(np.percentile(ttfts, 50)))
                record(side, "ttft_p95_ms", 1000 * float(np.percentile(ttfts, 95)))
            for n in clients:
                key = "single_tok_s" if n == 1 else f"aggregate_{n}_tok_s"
                for side in order:
                    record(side, key, generation_rate(side.url, n, tokens))
        finally:
            for side in order:
                side.stop()
        print(f"round {rnd + 1}/{rounds} done", file=sys.stderr, flush=True)

    med = {s.name: {k: statistics.median(v) for k, v in figures[s.name].items()} for s in sides}
    bandwidth = statistics.median(bandwidths)
    weight_bytes = sum(inspect_model(model).tensor_type_bytes.values())
    roofline = bandwidth / weight_bytes
    for s in sides:
        med[s.name]["roofline_fraction"] = med[s.name]["single_tok_s"] / roofline

    names = [s.name for s in sides]
    base = "llama-server" if "llama-server" in names else None
    print(f"\nmodel {model.name} ({weight_bytes / 2**20:.1f} MiB of weights), threads {args.threads}, "
          f"{args.parallel} slots, {rounds} round(s), median")
    print(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s -> roofline {roofline:.0f} tok/s (bandwidth / weight bytes)\n")
    header = "| figure | " + " | ".join(names) + (" | " + " | ".join(f"{n}/llama-server" for n in names if n != base)
                                                   if base else "") + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for key in med[names[0]]:
        row = f"| {key} | " + " | ".join(f"{med[n][key]:.3f}" for n in names)
        if base:
            row += " | " + " | ".join(f"{med[n][key] / med[base][key]:.2f}" for n in names if n != base)
        print(row + " |")
    checks = []
    if base:
        a, b = med["llamaproc"], med[base]
        for key in [k for k in a if k == "single_tok_s" or k.startswith("aggregate_")]:
            checks.append((f"{key}: llamaproc/llama-server >= 0.98", a[key] / b[key] >= 0.98, a[key] / b[key]))
        checks.append(("start_to_ready_s: llamaproc <= 0.9 x llama-server",
                       a["start_to_ready_s"] <= 0.9 * b["start_to_ready_s"],
                       a["start_to_ready_s"] / b["start_to_ready_s"]))
    if "llama-cpp-python" in med and "aggregate_8_tok_s" in med["llamaproc"]:
        ratio = med["llamaproc"]["aggregate_8_tok_s"] / med["llama-cpp-python"]["aggregate_8_tok_s"]
        checks.append(("aggregate_8_tok_s: llamaproc >= 8 x llama-cpp-python", ratio >= 8, ratio))
    if checks:
        print("\ntargets:")
        for label, ok, value in checks:
            print(f"  {'MET ' if ok else 'MISS'} {label} (ratio {value:.2f})")
    for note in notes:
        print("\nnote: " + note)
    if args.json:
        args.json.write_text(json.dumps({"raw": figures, "median": med, "bandwidth_Bps": bandwidth,
                                         "weight_bytes": weight_bytes, "notes": notes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
