"""What process isolation costs: the same server in this process and isolated in a child
process (``isolation="process"``), sides interleaved round by round in one run.

    python benchmarks/bench_isolation.py [--model PATH] [--rounds 3] [--tokens 128] [--json OUT]

I1  start to ready (s): ``LlamaServer.start`` until it returns. Goal: isolated <= in-process + 0.5 s.
I2  HTTP single-stream tok/s and 8-client aggregate tok/s (``-np 8``). Goal: isolated >= 0.98x.
I3  direct streaming: tok/s and consumer CPU per token (``time.thread_time`` of the reading
    thread) of a direct-API stream. Goal: isolated tok/s >= 0.95x.
I4  crash to serving again (isolated only): a SIGKILL of the child until a chat request
    answers 200 on the same port (restart policy with a 0.05 s first backoff).

Figures are medians over rounds; ratios are isolated / in-process of the same round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from pathlib import Path

from llamaproc import LlamaServer, RestartPolicy, ServerConfig
from llamaproc.default_model import fetch_model
from llamaproc.testing import Fault

MODES = ("none", "process")


def http_stream_tokens(port: int, tokens: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": "Once upon a time", "n_predict": tokens, "ignore_eos": True, "stream": True, "temperature": 0}
    conn.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
    n = 0
    for raw in conn.getresponse():
        if raw.startswith(b"data: ") and b'"content"' in raw:
            n += 1
    conn.close()
    return n


def i2(server: LlamaServer, tokens: int) -> dict:
    t = time.perf_counter()
    n = http_stream_tokens(server.port, tokens)
    single = n / (time.perf_counter() - t)
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(http_stream_tokens(server.port, tokens // 2)))
               for _ in range(8)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    aggregate = sum(counts) / (time.perf_counter() - t)
    return {"single_tok_s": single, "aggregate8_tok_s": aggregate}


def i3(server: LlamaServer, tokens: int) -> dict:
    cpu0, t0 = time.thread_time(), time.perf_counter()
    n = 0
    for _ in server.direct.completions.create(prompt="Once upon a time", max_tokens=tokens, ignore_eos=True,
                                              stream=True, temperature=0):
        n += 1
    return {"tok_s": n / (time.perf_counter() - t0), "cpu_us_per_token": (time.thread_time() - cpu0) / n * 1e6}


def i4(server: LlamaServer) -> float:
    conn_body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    server.inject_fault(Fault.process_killed())
    t = time.perf_counter()
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("POST", "/v1/chat/completions", conn_body, {"Content-Type": "application/json"})
            if conn.getresponse().status == 200 and server.metrics().restarts > 0:
                return time.perf_counter() - t
        except OSError:
            pass
        time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model or fetch_model(quiet=True)
    rounds: list[dict] = []
    for _ in range(args.rounds):
        row: dict = {}
        for mode in MODES:
            cfg = ServerConfig(model_path=model, parallel=8, context_size=8 * (args.tokens + 64),
                               threads=args.threads, isolation=mode, restart=RestartPolicy(backoff_s=(0.05, 1.0)))
            t = time.perf_counter()
            server = LlamaServer.start(cfg)
            try:
                start_s = time.perf_counter() - t
                server.direct.completions.create(prompt="warm up", max_tokens=4)
                row[mode] = {"start_s": start_s, **i2(server, args.tokens), "direct": i3(server, args.tokens)}
                if mode == "process":
                    row[mode]["crash_to_serving_s"] = i4(server)
            finally:
                server.stop()
        rounds.append(row)

    def med(mode: str, *path: str) -> float:
        values = []
        for r in rounds:
            v = r[mode]
            for key in path:
                v = v[key]
            values.append(v)
        return statistics.median(values)

    def ratio(*path: str) -> float:
        return statistics.median(_get(r["process"], path) / _get(r["none"], path) for r in rounds)

    print(f"model {model.name}; parallel 8; {args.rounds} rounds; {args.tokens} tokens per stream")
    summary = {
        "I1_start_s": {m: med(m, "start_s") for m in MODES},
        "I2_single_tok_s": {m: med(m, "single_tok_s") for m in MODES} | {"ratio": ratio("single_tok_s")},
        "I2_aggregate8_tok_s": {m: med(m, "aggregate8_tok_s") for m in MODES} | {"ratio": ratio("aggregate8_tok_s")},
        "I3_direct_tok_s": {m: med(m, "direct", "tok_s") for m in MODES} | {"ratio": ratio("direct", "tok_s")},
        "I3_direct_cpu_us_per_token": {m: med(m, "direct", "cpu_us_per_token") for m in MODES},
        "I4_crash_to_serving_s": med("process", "crash_to_serving_s"),
    }
    s = summary
    print(f"I1 start to ready: in-process {s['I1_start_s']['none']:.2f} s, isolated {s['I1_start_s']['process']:.2f} s"
          f" (+{s['I1_start_s']['process'] - s['I1_start_s']['none']:.2f} s; goal <= +0.5 s)")
    for key, label, goal in (("I2_single_tok_s", "I2 HTTP single stream", 0.98),
                             ("I2_aggregate8_tok_s", "I2 HTTP 8 clients", 0.98),
                             ("I3_direct_tok_s", "I3 direct stream", 0.95)):
        print(f"{label}: in-process {s[key]['none']:.1f} tok/s, isolated {s[key]['process']:.1f} tok/s,"
              f" ratio {s[key]['ratio']:.3f} (goal >= {goal})")
    cpu = s["I3_direct_cpu_us_per_token"]
    print(f"I3 consumer CPU per direct token: in-process {cpu['none']:.0f} us, isolated {cpu['process']:.0f} us")
    print(f"I4 crash (SIGKILL) to serving again: {s['I4_crash_to_serving_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2))
    return 0


def _get(row: dict, path: tuple[str, ...]) -> float:
    v: object = row
    for key in path:
        v = v[key]  # type: ignore[index]
    return float(v)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
