"""Model pool figures, each next to a baseline measured in the same run.

    python benchmarks/bench_pool.py [--model PATH] [--rounds 3] [--soak-s 60] [--json OUT]

P1  load: start-to-serving of SmolLM2 through ``pool.load`` vs ``LlamaServer.start`` with the
    same flags (rounds interleaved). Goal: ratio <= 1.1.
P2  swap: ``pool.swap`` hot (both fit) and cold (``max_loaded=1``) between SmolLM2 Q4_1 and a
    Q4_0 requantization of it: SwapReport load and drain seconds, and the wall time.
P3  latency during swaps: 4 clients sending 16-token requests; p50/p95/max latency in a
    window with a swap (hot, then cold) vs a window without; every non-2xx counted.
P4  two models decoding at once vs one: aggregate tok/s and p95 request latency of 2
    concurrent 64-token streams served by two models (one each) vs by one model (2 slots),
    for thread plans: the default (physical cores - 1 threads per model, decode gate on, idle
    workers sleeping: ``--poll 0``), 2 threads per model with the gate, 2 threads without the
    gate (llama-server's own behaviour), the gate with llama.cpp's default ``--poll 50``, and
    ``--poll 0`` without the gate. Goal: together/alone >= 0.9 and neither model below 0.8x
    of the other.
P5  swap soak (the issue's proof): 8 clients (4 streaming) for ``--soak-s`` seconds while 5
    swaps A<->B run, hot then again with ``max_loaded=1`` (cold): non-2xx, streams without
    finish_reason and [DONE], and the old instances freed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from llamaproc import LlamaServer, ModelPool, ModelSpec, PoolConfig, ServerConfig, quantize
from llamaproc.default_model import fetch_model


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def post(port: int, body: dict, *, stream: bool = False) -> tuple[int, int, bool]:
    """(status, generated tokens, ended cleanly) of one chat request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps({**body, "stream": stream}),
                     {"Content-Type": "application/json"})
        res = conn.getresponse()
        if not stream:
            data = json.loads(res.read())
            return res.status, data.get("usage", {}).get("completion_tokens", 0), res.status == 200
        tokens, finish, done = 0, None, False
        for raw in res:
            if not raw.startswith(b"data: "):
                continue
            if raw[6:12] == b"[DONE]":
                done = True
                break
            event = json.loads(raw[6:])
            choice = (event.get("choices") or [{}])[0]
            tokens += 1 if (choice.get("delta") or {}).get("content") else 0
            finish = choice.get("finish_reason") or finish
        return res.status, tokens, done and finish is not None
    finally:
        conn.close()


def spec(path: Path, threads: int | None = None, parallel: int = 2, extra: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(model_path=path, context_size=2048, parallel=parallel, threads=threads, extra_args=extra)


def body(tokens: int) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "Write a story about a fox."}],
            "max_tokens": tokens, "ignore_eos": True, "temperature": 0}


# -- P1 -------------------------------------------------------------------------------------

def p1(model: Path, rounds: int) -> dict:
    pool_s, server_s = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        with LlamaServer.start(ServerConfig(model_path=model, context_size=2048, parallel=2)):
            server_s.append(time.perf_counter() - t)
        with ModelPool.start(PoolConfig(models={"m": spec(model)})) as pool:
            t = time.perf_counter()
            pool.load("m")
            pool_s.append(time.perf_counter() - t)
    return {"pool_load_s": statistics.median(pool_s), "server_start_s": statistics.median(server_s),
            "ratio": statistics.median(pool_s) / statistics.median(server_s)}


# -- P2, P3 ---------------------------------------------------------------------------------

class Clients:
    """Clients in a loop; every request's latency and outcome recorded with its start time."""

    def __init__(self, port: int, n: int, tokens: int, streaming: int = 0) -> None:
        self.port, self.tokens = port, tokens
        self.records: list[tuple[float, float, int, bool]] = []  # start, latency, status, clean
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i < streaming,)) for i in range(n)]

    def run(self, streaming: bool) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                status, _, clean = post(self.port, body(self.tokens), stream=streaming)
            except OSError:
                status, clean = 0, False
            self.records.append((t, time.perf_counter() - t, status, clean))

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def window(self, start: float, end: float) -> dict:
        inside = [r for r in self.records if start <= r[0] < end]
        lat = [r[1] * 1000 for r in inside]
        return {"requests": len(inside), "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95),
                "max_ms": max(lat) if lat else float("nan"),
                "failed": sum(1 for r in inside if r[2] != 200 or not r[3])}


def p2_p3(a: Path, b: Path) -> dict:
    out: dict = {}
    for mode, max_loaded in (("hot", 2), ("cold", 1)):
        with ModelPool.start(PoolConfig(models={"m": spec(a)}, max_loaded=max_loaded)) as pool:
            pool.load("m")
            with Clients(pool.port, 4, 16) as clients:
                time.sleep(3)
                quiet_start = time.perf_counter()
                time.sleep(4)
                swap_start = time.perf_counter()
                report = pool.swap("m", spec(b))
                swap_end = time.perf_counter()
                time.sleep(1)
            out[mode] = {"mode": report.mode, "load_s": report.load_s, "drain_s": report.drain_s,
                         "wall_s": swap_end - swap_start, "finished_on_old": report.finished_on_old,
                         "quiet": clients.window(quiet_start, swap_start),
                         "during_swap": clients.window(swap_start - 0.5, swap_end + 0.5)}
    return out


# -- P4 -------------------------------------------------------------------------------------

def p4(model: Path, rounds: int, tokens: int = 64) -> dict:
    plans = {"default": (None, (), True), "threads2_gate": (2, (), True), "threads2": (2, (), False),
             "threads2_poll50_gate": (2, ("--poll", "50"), True), "threads2_poll0": (2, ("--poll", "0"), False)}
    out: dict = {}
    for name, (threads, extra, gate) in plans.items():
        alone_rates, together_rates, balance, alone_p95, together_p95 = [], [], [], [], []
        cfg = PoolConfig(models={"m": spec(model, threads, 2, extra), "n": spec(model, threads, 2, extra)},
                         max_loaded=2, decode_gate=gate)
        with ModelPool.start(cfg) as pool:
            pool.load("m")
            pool.load("n")
            for _ in range(rounds):
                for together in (False, True):
                    results: dict[int, list[tuple[float, int]]] = {0: [], 1: []}

                    def client(i: int) -> None:
                        b = {**body(tokens), "model": ("n" if together and i == 1 else "m")}
                        for _ in range(3):
                            t = time.perf_counter()
                            _, n_tok, _ = post(pool.port, b, stream=True)
                            results[i].append((time.perf_counter() - t, n_tok))

                    t0 = time.perf_counter()
                    threads_ = [threading.Thread(target=client, args=(i,)) for i in range(2)]
                    for t in threads_:
                        t.start()
                    for t in threads_:
                        t.join()
                    wall = time.perf_counter() - t0
                    total = sum(n for r in results.values() for _, n in r)
                    lat = [s * 1000 for r in results.values() for s, _ in r]
                    if together:
                        together_rates.append(total / wall)
                        together_p95.append(pct(lat, 0.95))
                        per = [sum(n for _, n in results[i]) / sum(s for s, _ in results[i]) for i in (0, 1)]
                        balance.append(min(per) / max(per))
                    else:
                        alone_rates.append(total / wall)
                        alone_p95.append(pct(lat, 0.95))
        alone, together = statistics.median(alone_rates), statistics.median(together_rates)
        out[name] = {"alone_tok_s": alone, "together_tok_s": together, "ratio": together / alone,
                     "balance": statistics.median(balance), "alone_p95_ms": statistics.median(alone_p95),
                     "together_p95_ms": statistics.median(together_p95)}
    return out


# -- P5 -------------------------------------------------------------------------------------

def p5(a: Path, b: Path, seconds: float) -> dict:
    out: dict = {}
    for label, max_loaded in (("hot", 2), ("cold", 1)):
        with ModelPool.start(PoolConfig(models={"m": spec(a)}, max_loaded=max_loaded)) as pool:
            pool.load("m")
            modes = []
            with Clients(pool.port, 8, 16, streaming=4) as clients:
                start = time.perf_counter()
                for i in range(5):
                    time.sleep(seconds / 6)
                    modes.append(pool.swap("m", spec(b if i % 2 == 0 else a)).mode)
                time.sleep(max(0.0, seconds - (time.perf_counter() - start)))
            stats = clients.window(0, float("inf"))
            out[label] = {"seconds": seconds, "requests": stats["requests"], "failed": stats["failed"],
                          "modes": sorted(set(modes)), "instances_after": pool.instances_alive}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--soak-s", type=float, default=60.0)
    parser.add_argument("--only", nargs="*", default=["P1", "P2", "P4", "P5"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    a = args.model or fetch_model(quiet=True)
    results: dict = {"model": a.name}
    with tempfile.TemporaryDirectory() as tmp:
        b = Path(tmp) / (a.stem + ".q4_0.gguf")
        quantize(a, b, "q4_0", allow_requantize=True)
        if "P1" in args.only:
            results["P1"] = r = p1(a, args.rounds)
            print(f"P1 load: pool {r['pool_load_s']:.3f} s, LlamaServer.start {r['server_start_s']:.3f} s, "
                  f"ratio {r['ratio']:.2f} (goal <= 1.1)")
        if "P2" in args.only:
            results["P2_P3"] = r = p2_p3(a, b)
            for mode, x in r.items():
                q, d = x["quiet"], x["during_swap"]
                print(f"P2 {mode} swap ({x['mode']}): load {x['load_s']:.3f} s, drain {x['drain_s']:.3f} s, "
                      f"wall {x['wall_s']:.3f} s, {x['finished_on_old']} finished on the old model")
                print(f"P3 {mode}: latency p50/p95/max quiet {q['p50_ms']:.0f}/{q['p95_ms']:.0f}/{q['max_ms']:.0f} ms "
                      f"vs during the swap {d['p50_ms']:.0f}/{d['p95_ms']:.0f}/{d['max_ms']:.0f} ms; "
                      f"failed {q['failed'] + d['failed']}")
        if "P4" in args.only:
            results["P4"] = r = p4(a, args.rounds)
            for plan, x in r.items():
                print(f"P4 {plan:>15}: one model {x['alone_tok_s']:.1f} tok/s (p95 {x['alone_p95_ms']:.0f} ms), "
                      f"two models {x['together_tok_s']:.1f} tok/s (p95 {x['together_p95_ms']:.0f} ms), "
                      f"ratio {x['ratio']:.2f}, balance {x['balance']:.2f}")
        if "P5" in args.only:
            results["P5"] = r = p5(a, b, args.soak_s)
            for label, x in r.items():
                print(f"P5 {label}: {x['requests']} requests in {x['seconds']:.0f} s with 5 swaps ({x['modes']}): "
                      f"{x['failed']} failed; instances after: {x['instances_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
