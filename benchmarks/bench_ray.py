"""What Ray Serve costs and gives: llamaproc replicas behind Serve's proxy next to a bare server,
sides interleaved round by round in one run, on a local Ray cluster.

    python benchmarks/bench_ray.py [--model PATH] [--rounds 3] [--tokens 128] [--threads 1] [--json OUT]

R1  single stream through Serve's HTTP proxy vs the bare server's own port (same config, the
    same request, alternating): tok/s (tokens / stream time) and time to first token.
    Goal: Serve >= 0.95x the bare tok/s; the TTFT overhead is stated in ms.
R2  a load step (5 clients on a replica of 2 slots, autoscaling min 1 max 2, upscale delay 1 s,
    look-back 2 s, metrics every 0.25 s) until Serve decides on a 2nd replica, until it runs, and
    until it has answered a request. Per policy: "slots" (llamaproc's busy slots + waiting
    requests, the default) and "requests" (Serve's requests in flight, target = slots).
R3  downscale drain: after the load, two long streams (one per replica) while the app goes
    back to 1 replica: the removed replica's stream must finish; failed requests counted (goal 0).
R4  slow readers: 4 clients (started 0.5 s apart) whose 10-token streams are sent 200 ms per chunk
    (the slot is done in ~0.2 s, the client reads for 2 s): the most replicas each policy asks
    for over 15 s.

R5  the CPU the Serve path spends per streamed chunk, with the tiny generated model (its decode
    costs little, so what is left is relaying): CPU time of Serve's proxy process and of the
    replica's process (decode included) over a 512-token stream, per chunk (Linux: /proc).

Figures are medians over rounds (R1); R2-R4 run once per policy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

from llamaproc import LlamaServer, ServerConfig
from llamaproc.default_model import fetch_model
from llamaproc.ray import ScaleOptions, ServeApp, run
from llamaproc.testing import Fault

CHAT = {"messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}], "temperature": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stream(base: str, tokens: int, **extra: object) -> dict:
    """One streamed chat completion: content chunks, time to the first, total time, [DONE] seen."""
    host, _, rest = base.removeprefix("http://").partition(":")
    port, _, prefix = rest.partition("/")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    body = {**CHAT, "max_tokens": tokens, "ignore_eos": True, "stream": True, **extra}
    t0 = time.perf_counter()
    first = None
    n, done, ok = 0, False, True
    try:
        conn.request("POST", ("/" + prefix if prefix else "") + "/v1/chat/completions", json.dumps(body),
                     {"Content-Type": "application/json"})
        res = conn.getresponse()
        ok = res.status == 200
        for raw in res:
            if raw.startswith(b"data: [DONE]"):
                done = True
            elif raw.startswith(b"data: ") and b'"content":"' in raw:
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        conn.close()
    total = time.perf_counter() - t0
    return {"tokens": n, "ttft_s": first or total, "total_s": total, "done": done, "ok": ok and done and n == tokens}


def r1(app: ServeApp, bare: LlamaServer, rounds: int, tokens: int) -> dict:
    rows = []
    for _ in range(rounds):
        row = {}
        for side, url in (("bare", bare.url), ("serve", app.url)):
            s = stream(url, tokens)
            row[side] = {"tok_s": s["tokens"] / s["total_s"], "ttft_ms": s["ttft_s"] * 1000, "ok": s["ok"]}
        rows.append(row)
    return {side: {k: statistics.median(r[side][k] for r in rows) for k in ("tok_s", "ttft_ms")}
            for side in ("bare", "serve")} | {
        "ratio_tok_s": statistics.median(r["serve"]["tok_s"] / r["bare"]["tok_s"] for r in rows),
        "ttft_overhead_ms": statistics.median(r["serve"]["ttft_ms"] - r["bare"]["ttft_ms"] for r in rows),
        "failed": sum(not r[s]["ok"] for r in rows for s in ("bare", "serve")), "rounds": rows}


class Load:
    def __init__(self, url: str, workers: int, tokens: int, stagger_s: float = 0.0) -> None:
        self.results: list[dict] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, tokens), daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()
            time.sleep(stagger_s)

    def _run(self, url: str, tokens: int) -> None:
        while not self._stop.is_set():
            self.results.append(stream(url, tokens))

    def stop(self) -> list[dict]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.results


def replicas(app: ServeApp) -> dict[str, int]:
    return app.status().deployments["llamaproc"].replicas


def r2_r3(config: ServerConfig, port: int, scale_on: str, tokens: int) -> dict:
    options = ScaleOptions(min_replicas=1, max_replicas=2, upscale_delay_s=1.0, downscale_delay_s=3.0,
                           look_back_period_s=2.0, metrics_interval_s=0.25, scale_on=scale_on)
    name = f"step-{scale_on}"
    app = run(config, options, name=name, route_prefix=f"/{name}", port=port)
    try:
        first_replica = {x.replica for x in app.status().deployments["llamaproc"].loads}
        t0 = time.perf_counter()
        load = Load(app.url, workers=5, tokens=tokens)
        decided = running = serving = None
        while serving is None and time.perf_counter() - t0 < 180:
            dep = app.status().deployments["llamaproc"]
            now = time.perf_counter() - t0
            if decided is None and sum(dep.replicas.values()) >= 2:
                decided = now
            if running is None and dep.running >= 2:
                running = now
            if any(x.replica not in first_replica and x.requests.get("ok", 0) > 0 for x in dep.loads):
                serving = now
            time.sleep(0.5)  # serve.status() is not free for the controller on 2 cores
        results = load.stop()
        # R3: one long stream per replica, then the load that is left fits one replica
        longs: list[dict] = []
        threads = [threading.Thread(target=lambda: longs.append(stream(app.url, 12 * tokens))) for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        t1 = time.perf_counter()
        downscale_s = drained_s = None
        streams_running_at_downscale = 0
        while drained_s is None and time.perf_counter() - t1 < 180:
            dep = app.status().deployments["llamaproc"]
            if downscale_s is None and dep.running < 2:
                downscale_s = time.perf_counter() - t1
                streams_running_at_downscale = sum(t.is_alive() for t in threads)
            if downscale_s is not None and sum(dep.replicas.values()) == 1:
                drained_s = time.perf_counter() - t1
            time.sleep(0.5)
        for t in threads:
            t.join()
        every = results + longs
        return {"R2_decided_s": decided, "R2_running_s": running, "R2_serving_s": serving,
                "R2_requests": len(results), "R3_downscale_s": downscale_s, "R3_drained_s": drained_s,
                "R3_streams_in_flight_at_downscale": streams_running_at_downscale,
                "failed": sum(not r["ok"] for r in every), "requests": len(every)}
    finally:
        app.stop()


def r4(config: ServerConfig, port: int, scale_on: str) -> dict:
    options = ScaleOptions(min_replicas=1, max_replicas=2, upscale_delay_s=1.0, downscale_delay_s=3.0,
                           look_back_period_s=2.0, metrics_interval_s=0.25, scale_on=scale_on,
                           faults=(Fault.slow_tokens(0.2),))
    name = f"slow-{scale_on}"
    app = run(config, options, name=name, route_prefix=f"/{name}", port=port)
    try:
        # decoded in ~0.2 s, read in 2 s; clients start 0.5 s apart (no burst on the slots)
        load = Load(app.url, workers=4, tokens=10, stagger_s=0.5)
        most = 1
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 15:
            most = max(most, sum(replicas(app).values()))
            time.sleep(0.5)
        results = load.stop()
        return {"R4_most_replicas": most, "failed": sum(not r["ok"] for r in results), "requests": len(results)}
    finally:
        app.stop()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proxy_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ProxyActor" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def r5(port: int, folder: Path) -> dict:
    from llamaproc.testing import make_tiny_model

    tiny = make_tiny_model(folder / "tiny.gguf")
    config = ServerConfig(model_path=tiny, context_size=1024, threads=1, parallel=2)
    app = run(config, ScaleOptions(metrics_interval_s=0.25), name="relay", route_prefix="/relay", port=port)
    try:
        time.sleep(1.0)  # the board has the replica's first sample
        replica = app.status().deployments["llamaproc"].loads[0].pid
        proxies = _proxy_pids()
        stream(app.url, 8)
        rows = []
        for _ in range(3):
            before = {p: _cpu_s(p) for p in [replica, *proxies]}
            s = stream(app.url, 512)
            after = {p: _cpu_s(p) for p in before}
            rows.append({"chunks_per_s": s["tokens"] / s["total_s"],
                         "proxy_ms_per_chunk": sum(after[p] - before[p] for p in proxies) * 1000 / s["tokens"],
                         "replica_ms_per_chunk": (after[replica] - before[replica]) * 1000 / s["tokens"]})
        return {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    finally:
        app.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-scaling", action="store_true", help="R1 only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray
        from ray import serve

    model = args.model or fetch_model(quiet=True)
    config = ServerConfig(model_path=model, context_size=4096, threads=args.threads, parallel=2)
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    summary: dict = {"model": model.name, "threads": args.threads, "tokens": args.tokens}
    try:
        app = run(config, ScaleOptions(), name="single", route_prefix="/single", port=port)
        bare = LlamaServer.start(config)
        try:
            for url in (app.url, bare.url):
                stream(url, 4)  # warm up both
            summary["R1"] = r1(app, bare, args.rounds, args.tokens)
        finally:
            bare.stop()
            app.stop()
        if not args.skip_scaling:
            for scale_on in ("slots", "requests"):
                summary[f"R2_R3_{scale_on}"] = r2_r3(config, port, scale_on, max(args.tokens // 3, 16))
            for scale_on in ("slots", "requests"):
                summary[f"R4_{scale_on}"] = r4(config, port, scale_on)
        if Path("/proc/self/stat").exists():
            with tempfile.TemporaryDirectory() as folder:
                summary["R5"] = r5(port, Path(folder))
    finally:
        serve.shutdown()
        ray.shutdown()

    s = summary["R1"]
    print(f"model {model.name}; threads {args.threads}; parallel 2; {args.rounds} rounds; {args.tokens} tokens")
    print(f"R1 single stream: bare {s['bare']['tok_s']:.1f} tok/s, Serve {s['serve']['tok_s']:.1f} tok/s, ratio "
          f"{s['ratio_tok_s']:.3f} (goal >= 0.95); TTFT bare {s['bare']['ttft_ms']:.1f} ms, Serve "
          f"{s['serve']['ttft_ms']:.1f} ms (+{s['ttft_overhead_ms']:.1f} ms); failed {s['failed']}")
    for scale_on in ("slots", "requests"):
        r = summary.get(f"R2_R3_{scale_on}")
        if r is None:
            continue
        print(f"R2 [{scale_on}] load step -> 2nd replica decided {_s(r['R2_decided_s'])}, running "
              f"{_s(r['R2_running_s'])}, serving {_s(r['R2_serving_s'])} ({r['R2_requests']} requests)")
        print(f"R3 [{scale_on}] downscale after {_s(r['R3_downscale_s'])} with {r['R3_streams_in_flight_at_downscale']}"
              f" streams in flight, drained after {_s(r['R3_drained_s'])}; failed {r['failed']} of {r['requests']}")
    for scale_on in ("slots", "requests"):
        r = summary.get(f"R4_{scale_on}")
        if r is not None:
            print(f"R4 [{scale_on}] slow readers (slots idle): most replicas {r['R4_most_replicas']}; failed "
                  f"{r['failed']} of {r['requests']}")
    r = summary.get("R5")
    if r is not None:
        print(f"R5 Serve path CPU per streamed chunk (tiny model, {r['chunks_per_s']:.0f} chunks/s): proxy "
              f"{r['proxy_ms_per_chunk']:.2f} ms, replica process {r['replica_ms_per_chunk']:.2f} ms (decode included)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


if __name__ == "__main__":
    raise SystemExit(main())
