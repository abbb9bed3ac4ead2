"""Soak: many concurrent clients of mixed traffic against one in-process server.

    python benchmarks/soak.py                          # 32 clients, 120 s, SmolLM2 (fetched once)
    python benchmarks/soak.py --quick                  # tiny model, 8 clients, 4 s (the test suite's smoke)
    python benchmarks/soak.py --clients 32 --duration 120 --warmup 30 --out soak.json

Each client loops over a weighted mix: chat completions over HTTP (plain and streamed),
/completion, embeddings over HTTP, and through `server.direct` chat, streamed chat and
embeddings; and cancellations: an HTTP stream dropped after two chunks, a direct stream
closed after two chunks, a direct call whose timeout runs out. A request *fails* when it does
not end the way its kind should (a status other than 200, a body without its content, an
exception other than the expected timeout, a stream without its end marker). Cancellations
count as ok when they end cleanly.

Reported: requests by kind and outcome, latency percentiles (whole request; time to the first
chunk for streams), throughput, the process RSS sampled every second, its drift from the end
of warm-up to the end of the run (and its least-squares slope), and the server's state after
the run (HEALTHY, slots free, its own request counters).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from llamaproc import HealthStatus, LlamaServer, ServerConfig, errors

PROMPTS = [
    "Write one sentence about the sea.", "What is 7 times 8?", "Name three colours.", "Say hello in French.",
    "Give me a word that rhymes with cat.", "What is the capital of Italy?", "Describe a cloud in five words.",
    "List two fruits.", "Why is the sky blue? Answer briefly.", "Count from one to five.",
    "Summarise: the quick brown fox jumps over the lazy dog.", "Translate 'good night' to Spanish.",
]
MIX = [  # kind, weight
    ("http_chat", 4), ("http_chat_stream", 3), ("http_completion", 3), ("http_embedding", 2),
    ("direct_chat", 3), ("direct_chat_stream", 2), ("direct_embed", 2),
    ("cancel_http_stream", 1), ("cancel_direct_stream", 1), ("cancel_direct_timeout", 1),
]


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _post(port: int, path: str, body: dict[str, Any], timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _stream(port: int, path: str, body: dict[str, Any], timeout: float, stop_after: int | None) -> tuple[int, int, float | None, bool]:
    """(status, chunks, seconds to the first chunk, saw [DONE])."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    first = None
    chunks = 0
    done = False
    try:
        conn.request("POST", path, json.dumps(dict(body, stream=True)), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return resp.status, 0, None, False
        while True:
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                if first is None:
                    first = time.perf_counter() - t0
                if line.strip() == b"data: [DONE]":
                    done = True
                    break
                if b'"error"' in line[:20]:
                    break
                chunks += 1
                if stop_after is not None and chunks >= stop_after:
                    break  # the client goes away mid-stream
        return resp.status, chunks, first, done
    finally:
        conn.close()


class Soak:
    def __init__(self, server: LlamaServer, *, max_tokens: int, timeout: float, seed: int) -> None:
        self.server, self.max_tokens, self.timeout = server, max_tokens, timeout
        self.seed = seed
        self.lock = threading.Lock()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.ttft: dict[str, list[float]] = defaultdict(list)
        self.failures: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.measuring = False

    def record(self, kind: str, ok: bool, seconds: float, detail: str = "", ttft: float | None = None) -> None:
        with self.lock:
            self.outcomes[(kind, "ok" if ok else "failed")] += 1
            if self.measuring:
                self.latency[kind].append(seconds)
                if ttft is not None:
                    self.ttft[kind].append(ttft)
            if not ok and len(self.failures) < 50:
                self.failures.append({"kind": kind, "detail": detail[:300], "t": round(time.monotonic(), 1)})

    def one(self, kind: str, rng: random.Random) -> None:
        port, n = self.server.port, rng.randint(self.max_tokens // 2, self.max_tokens)
        messages = [{"role": "user", "content": rng.choice(PROMPTS)}]
        t0 = time.perf_counter()
        ok, detail, ttft = False, "", None
        try:
            if kind == "http_chat":
                status, body = _post(port, "/v1/chat/completions", {"messages": messages, "max_tokens": n}, self.timeout)
                ok = status == 200 and "content" in json.loads(body)["choices"][0]["message"]
                detail = f"{status} {body[:200]!r}"
            elif kind == "http_chat_stream":
                status, chunks, ttft, done = _stream(port, "/v1/chat/completions", {"messages": messages, "max_tokens": n},
                                                     self.timeout, None)
                ok, detail = status == 200 and done and chunks > 0, f"{status} chunks={chunks} done={done}"
            elif kind == "http_completion":
                status, body = _post(port, "/completion", {"prompt": messages[0]["content"], "n_predict": n}, self.timeout)
                ok = status == 200 and json.loads(body)["tokens_predicted"] > 0
                detail = f"{status} {body[:200]!r}"
            elif kind == "http_embedding":
                status, body = _post(port, "/v1/embeddings", {"input": messages[0]["content"]}, self.timeout)
                ok = status == 200 and len(json.loads(body)["data"][0]["embedding"]) > 0
                detail = f"{status} {body[:200]!r}"
            elif kind == "direct_chat":
                r = self.server.direct.chat.completions.create(messages=messages, max_tokens=n, timeout=self.timeout)
                ok = "content" in r["choices"][0]["message"]
            elif kind == "direct_chat_stream":
                chunks, done = 0, False
                for chunk in self.server.direct.chat.completions.create(messages=messages, max_tokens=n, stream=True,
                                                                        timeout=self.timeout):
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    chunks += 1
                    choices = chunk.get("choices") or [{}]
                    done = done or choices[0].get("finish_reason") is not None
                ok, detail = chunks > 0 and done, f"chunks={chunks} done={done}"
            elif kind == "direct_embed":
                v = self.server.direct.embed(messages[0]["content"], timeout=self.timeout)
                ok = v.ndim == 2 and v.shape[1] > 0
            elif kind == "cancel_http_stream":
                status, chunks, ttft, _ = _stream(port, "/v1/chat/completions", {"messages": messages, "max_tokens": 64},
                                                  self.timeout, 2)
                ok, detail = status == 200 and chunks >= 1, f"{status} chunks={chunks}"
            elif kind == "cancel_direct_stream":
                stream = self.server.direct.chat.completions.create(messages=messages, max_tokens=64, stream=True,
                                                                    timeout=self.timeout)
                chunks = 0
                with stream:
                    for _ in stream:
                        chunks += 1
                        if chunks >= 2:
                            break
                ok, detail = chunks >= 1, f"chunks={chunks}"
            elif kind == "cancel_direct_timeout":
                try:
                    self.server.direct.chat.completions.create(messages=messages, max_tokens=256, timeout=0.05)
                    ok = True  # finished within 50 ms: fine too
                except errors.RequestTimeoutError:
                    ok = True
        except Exception as e:  # noqa: BLE001 - every unexpected exception is a failed request
            ok, detail = False, f"{type(e).__name__}: {e}"
        self.record(kind, ok, time.perf_counter() - t0, detail, ttft)

    def client(self, i: int) -> None:
        rng = random.Random(f"{self.seed}:{i}")
        kinds = [k for k, w in MIX for _ in range(w)]
        while not self.stop.is_set():
            self.one(rng.choice(kinds), rng)


def run(model: Path, *, clients: int, duration: float, warmup: float, threads: int | None, parallel: int,
        context_size: int, max_tokens: int, timeout: float = 300.0, seed: int = 0, extra_args: tuple[str, ...] = (),
        progress: bool = False) -> dict[str, Any]:
    # mean pooling: embeddings from a generative model (its own pooling is "none", which the
    # OpenAI-style route refuses); completions are unaffected
    fields: dict[str, Any] = dict(model_path=model, parallel=parallel, context_size=context_size, embeddings=True,
                                  extra_args=("--pooling", "mean") + tuple(extra_args))
    if threads:
        fields["threads"] = threads
    cfg = ServerConfig(**fields)
    rss_start = rss_bytes()
    server = LlamaServer.start(cfg)
    soak = Soak(server, max_tokens=max_tokens, timeout=timeout, seed=seed)
    samples: list[tuple[float, int]] = []
    t_begin = time.monotonic()
    workers = [threading.Thread(target=soak.client, args=(i,), name=f"soak-{i}") for i in range(clients)]
    for w in workers:
        w.start()
    warm_rss: int | None = None
    next_report = t_begin + 10
    while (now := time.monotonic()) < t_begin + warmup + duration:
        samples.append((now - t_begin, rss_bytes()))
        if warm_rss is None and now >= t_begin + warmup:
            warm_rss = samples[-1][1]
            with soak.lock:
                soak.measuring = True
                warm_counts = sum(soak.outcomes.values())
        if progress and now >= next_report:
            next_report += 10
            print(f"t={now - t_begin:5.0f}s requests={sum(soak.outcomes.values())} rss={samples[-1][1] / 2**20:.0f} MiB "
                  f"failed={sum(v for (k, o), v in soak.outcomes.items() if o == 'failed')}", flush=True)
        time.sleep(min(1.0, t_begin + warmup + duration - now) if duration > 5 else 0.2)
    soak.stop.set()
    for w in workers:
        w.join(timeout + 10)
    hung_clients = sum(1 for w in workers if w.is_alive())
    t_end = time.monotonic()
    if warm_rss is None:
        warm_rss, warm_counts = samples[0][1], 0
    # cancelled requests let go of their slots within a decode step: wait for that, bounded
    settle = time.monotonic()
    health = server.health_check()
    while health.slots_busy and time.monotonic() - settle < 10:
        time.sleep(0.05)
        health = server.health_check()
    settle_s = time.monotonic() - settle
    metrics = server.metrics()
    server.stop()
    after = [(t, r) for t, r in samples if t >= warmup]
    slope_mib_per_min = 0.0
    if len(after) > 2:
        xs, ys = [t for t, _ in after], [r / 2**20 for _, r in after]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        slope_mib_per_min = 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0
    end_rss = statistics.fmean(r for _, r in samples[-5:]) if samples else 0
    all_lat = [x for v in soak.latency.values() for x in v]
    total = sum(soak.outcomes.values())
    measured = total - warm_counts
    by_kind = {k: {"ok": soak.outcomes[(k, "ok")], "failed": soak.outcomes[(k, "failed")]} for k, _ in MIX}
    return {
        "model": str(model), "clients": clients, "duration_s": duration, "warmup_s": warmup,
        "config": {"threads": cfg.threads, "parallel": parallel, "context_size": context_size, "max_tokens": max_tokens},
        "requests": total, "requests_after_warmup": measured,
        "failed": sum(v["failed"] for v in by_kind.values()), "by_kind": by_kind, "failures": soak.failures[:20],
        "hung_clients": hung_clients,
        "throughput_rps": round(measured / max(t_end - t_begin - warmup, 1e-9), 2),
        "latency_s": {"p50": round(percentile(all_lat, 50), 3), "p95": round(percentile(all_lat, 95), 3),
                      "p99": round(percentile(all_lat, 99), 3), "max": round(max(all_lat, default=0), 3)},
        "latency_p99_by_kind_s": {k: round(percentile(v, 99), 3) for k, v in sorted(soak.latency.items())},
        "ttft_p99_s": {k: round(percentile(v, 99), 3) for k, v in sorted(soak.ttft.items())},
        "rss_mib": {"before_start": round(rss_start / 2**20, 1), "after_warmup": round(warm_rss / 2**20, 1),
                    "end": round(end_rss / 2**20, 1), "max": round(max(r for _, r in samples) / 2**20, 1)},
        "rss_drift_pct": round(100 * (end_rss - warm_rss) / warm_rss, 2),
        "rss_slope_mib_per_min": round(slope_mib_per_min, 3),
        "health_after": health.status.name, "slots_busy_after": health.slots_busy,
        "slots_free_after_s": round(settle_s, 3),
        "server_counts": dict(metrics.requests) if isinstance(metrics.requests, dict) else str(metrics.requests),
        "seconds": round(t_end - t_begin, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a GGUF path (default: SmolLM2, or the tiny model with --quick)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=120.0, help="seconds measured after the warm-up")
    p.add_argument("--warmup", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=None, help="compute threads (default: llamaproc's)")
    p.add_argument("--parallel", type=int, default=4, help="slots")
    p.add_argument("--context-size", type=int, default=4096)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--cache-ram", type=int, default=None, help="MiB of prompt cache (llama.cpp's --cache-ram)")
    p.add_argument("--quick", action="store_true", help="tiny model, 8 clients, 4 s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        from llamaproc.testing import make_tiny_model

        model = Path(args.model) if args.model else make_tiny_model(Path(tempfile.mkdtemp(prefix="soak-")) / "tiny.gguf")
        args.clients, args.duration, args.warmup = min(args.clients, 8), min(args.duration, 4.0), min(args.warmup, 1.0)
        args.context_size, args.max_tokens, args.threads = min(args.context_size, 1024), min(args.max_tokens, 8), 1
    elif args.model:
        model = Path(args.model)
    else:
        from llamaproc.default_model import fetch_model

        model = fetch_model(quiet=True)
    extra = ("--cache-ram", str(args.cache_ram)) if args.cache_ram is not None else ()
    result = run(model, clients=args.clients, duration=args.duration, warmup=args.warmup, threads=args.threads,
                 parallel=args.parallel, context_size=args.context_size, max_tokens=args.max_tokens,
                 seed=args.seed, extra_args=extra, progress=not args.quick)
    result["command"] = " ".join(["benchmarks/soak.py"] + (argv if argv is not None else sys.argv[1:]))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["failed"] == 0 and result["hung_clients"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
