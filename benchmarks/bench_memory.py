"""Host memory under sustained varied chat traffic, per prompt-cache setting.

    python benchmarks/bench_memory.py [--model PATH] [--clients 32] [--seconds 60] [--json OUT]

llama-server keeps a RAM prompt cache that grows with the variety of prompts it sees, up to
``--cache-ram`` (8 GiB by default). This runs the same traffic (``--clients`` threads, each
sending chats with a different system prompt and question, a few sharing a prefix) against
one server per setting, one after the other, sampling the process's RSS once a second:

* ``upstream``: ``--cache-ram 8192``, llama-server's default;
* ``default``: llamaproc's default (10 % of the available memory, at most 8 GiB);
* ``limit``: ``memory_limit`` = the model's own need + 64 MiB (the cache gets the rest);
* ``off``: ``--cache-ram 0``.

It prints, per setting: requests served, RSS after load, peak and final RSS growth, growth in
the last half of the run (a cache still filling keeps growing), and the cache cap.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import urllib.request
from pathlib import Path

from llamaproc import LlamaServer, ServerConfig
from llamaproc.default_model import fetch_model

MiB = 2**20
TOPICS = ["rivers", "volcanoes", "bread", "trains", "owls", "glass", "chess", "tides", "copper", "maps",
          "bees", "clocks", "salt", "kites", "moss", "bridges"]


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traffic(url: str, stop: threading.Event, seed: int, served: list[int]) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        topic = rng.choice(TOPICS)
        system = f"You are assistant #{rng.randrange(10_000)} and you answer questions about {topic}. " * rng.randint(1, 6)
        question = f"Tell me fact number {rng.randrange(1000)} about {topic}."
        body = json.dumps({"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
                           "max_tokens": 24, "temperature": 0.7}).encode()
        req = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as res:
                res.read()
            served[0] += 1
        except OSError:
            if not stop.is_set():
                raise


def run(cfg: ServerConfig, clients: int, seconds: float) -> dict:
    server = LlamaServer.start(cfg)
    try:
        base = rss()
        m = server.metrics()
        stop = threading.Event()
        served = [0]
        threads = [threading.Thread(target=traffic, args=(server.url, stop, i, served), daemon=True)
                   for i in range(clients)]
        for t in threads:
            t.start()
        samples = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            samples.append(rss() - base)
        stop.set()
        for t in threads:
            t.join()
        half = samples[len(samples) // 2:]
        return {"requests": served[0], "rss_after_load_mib": base / MiB, "peak_growth_mib": max(samples) / MiB,
                "final_growth_mib": samples[-1] / MiB, "late_growth_mib": (half[-1] - half[0]) / MiB,
                "cache_cap_mib": m.prompt_cache_limit_bytes / MiB,
                "model_need_mib": (m.model_bytes + m.kv_cache_bytes + m.compute_bytes) / MiB}
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--settings", default="upstream,default,limit,off")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model or fetch_model(quiet=True)
    base = dict(model_path=model, parallel=4, context_size=4096, threads=args.threads)
    probe = LlamaServer.start(ServerConfig(**base))
    m = probe.metrics()
    need = m.model_bytes + m.kv_cache_bytes + m.compute_bytes
    probe.stop()
    settings = {
        "upstream": ServerConfig(**base, extra_args=("--cache-ram", "8192")),
        "default": ServerConfig(**base),
        "limit": ServerConfig(**base, memory_limit=need + 64 * MiB),
        "off": ServerConfig(**base, extra_args=("--cache-ram", "0")),
    }
    results = {}
    print(f"model {model.name}; {args.clients} clients for {args.seconds:g} s per setting")
    print(f"{'setting':>9} {'requests':>8} {'cap MiB':>8} {'RSS MiB':>8} {'peak +':>7} {'final +':>7} {'late +':>7}")
    for name in args.settings.split(","):
        r = results[name] = run(settings[name], args.clients, args.seconds)
        print(f"{name:>9} {r['requests']:8d} {r['cache_cap_mib']:8.0f} {r['rss_after_load_mib']:8.0f} "
              f"{r['peak_growth_mib']:7.1f} {r['final_growth_mib']:7.1f} {r['late_growth_mib']:7.1f}")
    if "limit" in results:
        r = results["limit"]
        print(f"limit: memory_limit {(need + 64 * MiB) / MiB:.0f} MiB; model+KV+compute {need / MiB:.0f} MiB; "
              f"peak growth after load {r['peak_growth_mib']:.0f} MiB (the cache's share: {r['cache_cap_mib']:.0f} MiB)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
