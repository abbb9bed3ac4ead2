"""Decode speed of an embedded server while its host process is busy: the CPU governor against
fixed thread counts.

    python benchmarks/bench_host.py [--model PATH] [--rounds 5] [--tokens 128] [--json OUT]
                                    [--loads idle,py1,py2,numpy,alternating] [--no-pair]
                                    [--upstream-bin build/upstream/bin/llama-server]

An embedded server shares the CPU with the Python program around it. This measures
single-stream generation speed (tokens per second of decoding, as the server times it) under
host loads:

* ``idle``: nothing else runs;
* ``py1`` / ``py2``: one / two pure-Python threads spinning (they share the GIL);
* ``numpy``: a thread multiplying numpy matrices (BLAS, the GIL released);
* ``alternating``: one Python thread busy for 2 s, idle for 2 s, over a longer decode (its
  per-token latency p95 is reported, from the streamed tokens' arrival times);

for three thread settings of the server, each its own server in this process:

* ``governor``: what a ServerConfig without ``threads`` runs with (the CPU governor: all
  physical cores when the host is idle, a core left per busy host thread);
* ``cores``: one thread per physical core (llama.cpp's own default), fixed;
* ``cores-1``: one core left to the host, fixed.

All settings and loads are interleaved within each round (the machine's speed drifts), with a
pause before each measurement (the previous server's workers poll for a while after its last
step), and every figure is the median over rounds. Ratios compare the governor with the best fixed count
for the same load in the same run. Unless ``--no-pair``, it also runs two governed servers
decoding at once (aggregate speed against one alone, and the balance between them), and reports
the governor's own CPU cost and reaction time. With ``--upstream-bin`` (``python
benchmarks/upstream.py`` builds it), upstream llama-server with its default flags (its own
process, no ``-t``) is measured on the idle host too, interleaved with the others.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from llamaproc import LlamaServer, ServerConfig
from llamaproc._native import core
from llamaproc.default_model import fetch_model

PROMPT = "The history of the city begins"
# Pause before each measurement: the previous server's ggml workers poll (spin) for a while
# after its last step, on the cores the next one measures on.
SETTLE_S = 0.4


class HostLoad:
    """A host load, running while the context is open."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._stop = threading.Event()
        n = {"idle": 0, "py1": 1, "py2": 2, "numpy": 1, "alternating": 1}[kind]
        target = self._numpy if kind == "numpy" else self._alternate if kind == "alternating" else self._spin
        self._threads = [threading.Thread(target=target, daemon=True) for _ in range(n)]

    def _spin(self) -> None:
        x = 0
        while not self._stop.is_set():
            for _ in range(1000):
                x += 1

    def _numpy(self) -> None:
        a = np.random.default_rng(0).random((256, 256))
        while not self._stop.is_set():
            a = a @ a
            a /= np.abs(a).max()

    def _alternate(self) -> None:
        x = 0
        while not self._stop.is_set():
            t_end = time.monotonic() + 2.0
            while time.monotonic() < t_end and not self._stop.is_set():
                for _ in range(1000):
                    x += 1
            self._stop.wait(2.0)

    def __enter__(self) -> HostLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def decode_speed(url: str, tokens: int) -> float:
    body = json.dumps({"prompt": PROMPT, "n_predict": tokens, "ignore_eos": True, "temperature": 0,
                       "cache_prompt": False}).encode()
    req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as res:
        return float(json.load(res)["timings"]["predicted_per_second"])


def streamed_decode(url: str, tokens: int) -> tuple[float, float]:
    """(tokens per second, p95 of the gaps between streamed tokens in ms)."""
    body = json.dumps({"prompt": PROMPT, "n_predict": tokens, "ignore_eos": True, "temperature": 0,
                       "cache_prompt": False, "stream": True}).encode()
    req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
    arrivals = []
    speed = 0.0
    with urllib.request.urlopen(req, timeout=600) as res:
        for raw in res:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            arrivals.append(time.perf_counter())
            event = json.loads(line[6:])
            if event.get("stop") and "timings" in event:
                speed = float(event["timings"]["predicted_per_second"])
    gaps = sorted(b - a for a, b in zip(arrivals[1:-1], arrivals[2:-1]))
    p95 = gaps[int(0.95 * (len(gaps) - 1))] * 1000 if gaps else 0.0
    return speed, p95


def pair_run(model: Path, tokens: int, rounds: int) -> dict:
    """Two governed servers decoding at once vs one alone (interleaved, median of rounds)."""
    cfg = ServerConfig(model_path=model, parallel=1, context_size=2048)
    alone, aggregate, balance = [], [], []
    with LlamaServer.start(cfg) as a, LlamaServer.start(cfg) as b:
        decode_speed(a.url, 16), decode_speed(b.url, 16)
        for _ in range(rounds):
            alone.append(decode_speed(a.url, tokens))
            speeds: dict[str, float] = {}
            t0 = time.perf_counter()
            threads = [threading.Thread(target=lambda n=n, s=s: speeds.__setitem__(n, decode_speed(s.url, tokens)))
                       for n, s in (("a", a), ("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            aggregate.append(2 * tokens / wall)
            balance.append(min(speeds.values()) / max(speeds.values()))
    one = statistics.median(alone)
    return {"alone_tok_s": one, "aggregate_tok_s": statistics.median(aggregate),
            "aggregate_ratio": statistics.median(aggregate) / one, "balance": statistics.median(balance)}


def reaction_times(model: Path, repeats: int = 5) -> dict:
    """While a governed server decodes, a host thread starts spinning, then stops: how long the
    governor takes to leave it a core, and to take the core back (median of ``repeats``)."""
    def wait_reserved(value: int, limit_s: float = 5.0) -> float:
        t0 = time.perf_counter()
        while core.cpu_governor_status()["reserved_for_host"] != value and time.perf_counter() - t0 < limit_s:
            time.sleep(0.002)
        return time.perf_counter() - t0

    busy, calm = [], []
    with LlamaServer.start(ServerConfig(model_path=model, parallel=1, context_size=4096)) as server:
        stop = threading.Event()

        def keep_decoding() -> None:
            while not stop.is_set():
                decode_speed(server.url, 64)

        worker = threading.Thread(target=keep_decoding, daemon=True)
        worker.start()
        try:
            wait_reserved(0)
            for _ in range(repeats):
                with HostLoad("py1"):
                    busy.append(wait_reserved(1))
                    time.sleep(0.5)
                calm.append(wait_reserved(0))
                time.sleep(0.5)
        finally:
            stop.set()
            worker.join()
    return {"busy_ms": statistics.median(busy) * 1000, "calm_ms": statistics.median(calm) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--alternating-tokens", type=int, default=512)
    parser.add_argument("--loads", default="idle,py1,py2,numpy,alternating")
    parser.add_argument("--no-pair", action="store_true", help="skip the two-server run")
    parser.add_argument("--upstream-bin", type=Path, help="llama-server to compare on the idle host")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    model = args.model or fetch_model(quiet=True)
    loads = args.loads.split(",")

    log = logging.getLogger("llamaproc")
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler(io.StringIO()))  # lines are formatted and written

    cores = core.physical_cores()
    settings = {"governor": None, "cores": cores, "cores-1": max(1, cores - 1)}
    servers = {name: LlamaServer.start(ServerConfig(model_path=model, threads=t, parallel=1, context_size=2048))
               for name, t in settings.items()}
    speed: dict[str, dict[str, list[float]]] = {n: {ld: [] for ld in loads} for n in settings}
    p95: dict[str, list[float]] = {n: [] for n in settings}
    threads_seen: dict[str, list[int]] = {ld: [] for ld in loads}
    upstream = None
    upstream_speed: list[float] = []
    if args.upstream_bin:
        from bench_peers import Process  # benchmarks/ is on sys.path when run as a script

        upstream = Process("llama-server", [str(args.upstream_bin), "-m", str(model), "-c", "2048", "-np", "1"])
        upstream.start()
    gov0 = core.cpu_governor_status()
    t_start = time.perf_counter()
    try:
        for server in servers.values():
            decode_speed(server.url, 16)  # warm-up
        for _ in range(args.rounds):
            for load in loads:
                with HostLoad(load):
                    time.sleep(0.3)  # the load is running before the decode starts
                    for name, server in servers.items():
                        time.sleep(SETTLE_S)
                        if load == "alternating":
                            s, p = streamed_decode(server.url, args.alternating_tokens)
                            p95[name].append(p)
                        else:
                            s = decode_speed(server.url, args.tokens)
                        speed[name][load].append(s)
                        if name == "governor":
                            threads_seen[load].append(server.metrics().decode_threads)
                    if load == "idle" and upstream is not None:
                        time.sleep(SETTLE_S)
                        upstream_speed.append(decode_speed(upstream.url, args.tokens))
    finally:
        for server in servers.values():
            server.stop()
        if upstream is not None:
            upstream.stop()
    wall = time.perf_counter() - t_start
    gov1 = core.cpu_governor_status()
    idle_before = core.cpu_governor_status()["samples"]
    time.sleep(2.0)
    idle_samples = core.cpu_governor_status()["samples"] - idle_before

    print(f"model {model.name}; {cores} physical cores; {args.tokens}-token decode "
          f"({args.alternating_tokens} under 'alternating'); median of {args.rounds} rounds; logger at INFO")
    print(f"{'setting':>9} " + " ".join(f"{ld:>11}" for ld in loads))
    med = {n: {ld: statistics.median(v) for ld, v in speed[n].items()} for n in settings}
    for name in settings:
        print(f"{name:>9} " + " ".join(f"{med[name][ld]:11.1f}" for ld in loads))
    ratios = {ld: med["governor"][ld] / max(med["cores"][ld], med["cores-1"][ld]) for ld in loads}
    print(f"{'gov/best':>9} " + " ".join(f"{ratios[ld]:11.2f}" for ld in loads))
    print(f"{'gov thr':>9} " + " ".join(f"{statistics.median(threads_seen[ld]):11.0f}" for ld in loads))
    p95_med = {n: statistics.median(v) for n, v in p95.items() if v}
    if p95_med:
        print("alternating, p95 gap between tokens (ms): " + ", ".join(f"{n} {v:.1f}" for n, v in p95_med.items()))
    if "idle" in loads and "py1" in loads:
        print(f"governor busy(py1) / cores-1 idle: {med['governor']['py1'] / med['cores-1']['idle']:.2f}; "
              f"governor idle / cores idle: {med['governor']['idle'] / med['cores']['idle']:.2f}")
    if upstream_speed:
        up = statistics.median(upstream_speed)
        print(f"idle host, upstream llama-server with its defaults: {up:.1f} tok/s; governor / upstream "
              f"{med['governor']['idle'] / up:.2f}")
    cost = (gov1["sample_seconds"] - gov0["sample_seconds"]) / wall
    print(f"governor: {gov1['samples'] - gov0['samples']} samples, {cost * 1000:.2f} ms of CPU per second while "
          f"decoding; {idle_samples} samples in 2 s of idle")
    reaction = None
    if core.cpu_governor_status()["active"] and cores > 1:
        reaction = reaction_times(model)
        print(f"governor reaction: a core left to a host thread {reaction['busy_ms']:.0f} ms after it starts "
              f"spinning, taken back {reaction['calm_ms']:.0f} ms after it stops (median of 5)")
    pair = None
    if not args.no_pair:
        pair = pair_run(model, args.tokens, args.rounds)
        print(f"two governed servers at once: aggregate {pair['aggregate_tok_s']:.1f} tok/s vs "
              f"{pair['alone_tok_s']:.1f} alone ({pair['aggregate_ratio']:.2f}x), balance {pair['balance']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"model": model.name, "cores": cores, "tokens": args.tokens,
                                         "rounds": args.rounds, "median_tok_s": med, "governor_vs_best": ratios,
                                         "governor_threads": threads_seen, "alternating_p95_ms": p95_med,
                                         "samples": speed, "governor_cpu_per_s": cost, "idle_samples": idle_samples,
                                         "reaction": reaction, "pair": pair,
                                         "upstream_idle_tok_s": upstream_speed}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
