"""Start-to-ready, RSS and thread count over repeated start/stop cycles of the embedded server.

    python benchmarks/bench_lifecycle.py [--model PATH] [--cycles 20]

Prints the time from LlamaServer.start() to ready (median and range), the RSS growth while a
server is loaded, and the RSS and thread count after every cycle relative to the state after
the first one (a leak shows as steady growth).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from llamaproc import LlamaServer, ServerConfig
from llamaproc.default_model import fetch_model


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = args.model or fetch_model(quiet=True)
    cfg = ServerConfig(model_path=model, threads=args.threads)
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}).encode()

    base_rss, base_threads = rss(), threads()
    ready, loaded, after = [], [], []
    for i in range(args.cycles + 1):
        t0 = time.perf_counter()
        server = LlamaServer.start(cfg)
        ready.append(time.perf_counter() - t0)
        loaded.append(rss() - base_rss)
        req = urllib.request.Request(server.url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()
        server.stop()
        gc.collect()
        after.append((rss(), threads()))
    first_rss, first_threads = after[0]
    growth = [(r - first_rss) / 2**20 for r, _ in after[1:]]
    print(f"model {model.name}, {args.cycles} cycles after a warm-up cycle")
    print(f"start-to-ready: median {statistics.median(ready[1:]) * 1000:.0f} ms "
          f"(min {min(ready[1:]) * 1000:.0f}, max {max(ready[1:]) * 1000:.0f}; first {ready[0] * 1000:.0f})")
    print(f"RSS while loaded: +{statistics.median(loaded[1:]) / 2**20:.1f} MiB over the process before the first start")
    print(f"RSS after each stop vs after the warm-up cycle (MiB): {' '.join(f'{g:+.1f}' for g in growth)}")
    print(f"RSS growth per cycle: {growth[-1] / args.cycles:+.2f} MiB")
    print(f"threads: {base_threads} before, {first_threads} after warm-up, {after[-1][1]} after {args.cycles} cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
