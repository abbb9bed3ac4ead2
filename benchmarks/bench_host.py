"""Decode speed of an embedded server while its host process is busy.

    python benchmarks/bench_host.py [--model PATH] [--rounds 3] [--tokens 128] [--json OUT]

An embedded server shares the CPU with the Python program around it. This measures
single-stream generation speed (tokens per second of decoding, as the server times it) with
0, 1 and 2 busy pure-Python threads in the host, with the ``llamaproc`` logger at INFO (so
every server log line crosses into Python), for several thread settings of the server:

* ``default``: what a ServerConfig without ``threads`` runs with;
* ``cores``: one thread per physical core (llama.cpp's own default);
* ``cores-1``: one core left to the host.

All settings and busy counts are interleaved within each round (the machine's speed drifts),
and every figure is the median over rounds. The ratio ``busy/idle`` is the share of decode
speed a busy host keeps; the goal for the default is at least 0.8 with one busy thread.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import threading
import urllib.request
from pathlib import Path

from llamaproc import LlamaServer, ServerConfig
from llamaproc._native import core
from llamaproc.models import fetch_model


class BusyThreads:
    """``n`` threads running pure-Python loops (they contend for the GIL and a core)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._spin, daemon=True) for _ in range(n)]

    def _spin(self) -> None:
        x = 0
        while not self._stop.is_set():
            for _ in range(1000):
                x += 1

    def __enter__(self) -> BusyThreads:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def decode_speed(url: str, tokens: int) -> float:
    body = json.dumps({"prompt": "The history of the city begins", "n_predict": tokens, "ignore_eos": True,
                       "temperature": 0, "cache_prompt": False}).encode()
    req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as res:
        timings = json.load(res)["timings"]
    return float(timings["predicted_per_second"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--busy", default="0,1,2", help="busy-thread counts to measure")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    model = args.model or fetch_model(quiet=True)
    busy_counts = [int(b) for b in args.busy.split(",")]

    log = logging.getLogger("llamaproc")
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler(io.StringIO()))  # lines are formatted and written

    cores = core.physical_cores()
    settings = {"default": None, "cores": cores, "cores-1": max(1, cores - 1)}
    servers = {name: LlamaServer.start(ServerConfig(model_path=model, threads=t, parallel=1, context_size=2048))
               for name, t in settings.items()}
    results: dict[str, dict[int, list[float]]] = {name: {b: [] for b in busy_counts} for name in settings}
    try:
        for server in servers.values():
            decode_speed(server.url, 16)  # warm-up
        for _ in range(args.rounds):
            for busy in busy_counts:
                with BusyThreads(busy):
                    for name, server in servers.items():
                        results[name][busy].append(decode_speed(server.url, args.tokens))
    finally:
        for server in servers.values():
            server.stop()

    resolved = {name: (t if t is not None else core.default_threads()) for name, t in settings.items()}
    print(f"model {model.name}; {cores} physical cores; {args.tokens}-token decode; median of {args.rounds} rounds;"
          " logger at INFO")
    print(f"{'setting':>9} {'threads':>7} " + " ".join(f"{f'{b} busy':>9}" for b in busy_counts)
          + " " + " ".join(f"{f'{b}/0':>6}" for b in busy_counts[1:]))
    summary = {}
    for name in settings:
        med = {b: statistics.median(v) for b, v in results[name].items()}
        ratios = {b: med[b] / med[busy_counts[0]] for b in busy_counts[1:]}
        summary[name] = {"threads": resolved[name], "tok_s": med, "ratio": ratios, "samples": results[name]}
        print(f"{name:>9} {resolved[name]:>7} " + " ".join(f"{med[b]:9.1f}" for b in busy_counts)
              + " " + " ".join(f"{ratios[b]:6.2f}" for b in busy_counts[1:]))
    if args.json:
        args.json.write_text(json.dumps({"model": model.name, "cores": cores, "tokens": args.tokens,
                                         "rounds": args.rounds, "settings": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
