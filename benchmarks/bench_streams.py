"""Resumable streams (X-Conversation-Id): what keeping a stream for later readers costs, and how
long stop() takes with such streams, their readers and a router queue in flight.

    python benchmarks/bench_streams.py [--model PATH] [--rounds 5] [--tokens 128] [--json OUT]

R1  HTTP stream tok/s with and without ``X-Conversation-Id`` (the same server, sides
    interleaved round by round; ratio = with / without, median of the rounds). Goal: >= 0.98.
R2  ``LlamaServer.stop()`` with a resumable stream whose client left (its generation goes on
    into the session, slowed to 5 tok/s) and a reader attached to it. Goal: bounded, about the
    same as an idle stop.
R3  ``ModelPool.stop()`` with a resumable request parked in the router queue behind a model
    load that would take a minute. Goal: bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import threading
import time
from pathlib import Path

from llamaproc import LlamaServer, ModelPool, ModelSpec, PoolConfig, ServerConfig
from llamaproc.default_model import fetch_model
from llamaproc.testing import Fault


def stream(port: int, tokens: int, conversation: str | None) -> tuple[int, float]:
    headers = {"Content-Type": "application/json"}
    if conversation:
        headers["X-Conversation-Id"] = conversation
    body = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": tokens,
            "ignore_eos": True, "stream": True, "temperature": 0}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    n = sum(1 for raw in conn.getresponse() if raw.startswith(b"data: {"))
    conn.close()
    return n, time.perf_counter() - t


def r1(server: LlamaServer, rounds: int, tokens: int) -> dict:
    rows = []
    for i in range(rounds):
        n0, t0 = stream(server.port, tokens, None)
        n1, t1 = stream(server.port, tokens, f"bench-{i}")
        rows.append({"without_tok_s": n0 / t0, "with_tok_s": n1 / t1, "ratio": (n1 / t1) / (n0 / t0)})
    return {"rounds": rows, "ratio": statistics.median(r["ratio"] for r in rows),
            "without_tok_s": statistics.median(r["without_tok_s"] for r in rows),
            "with_tok_s": statistics.median(r["with_tok_s"] for r in rows)}


def leave_after_first_event(port: int, conversation: str, tokens: int) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens, "ignore_eos": True,
                       "stream": True})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json",
                                                         "X-Conversation-Id": conversation})
    res = conn.getresponse()
    res.readline()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def r2(cfg: ServerConfig) -> dict:
    idle = LlamaServer.start(cfg)
    t = time.perf_counter()
    idle.stop()
    idle_s = time.perf_counter() - t
    server = LlamaServer.start(cfg)
    server.inject_fault(Fault.slow_tokens(0.2))
    leave_after_first_event(server.port, "left", 400)
    reader = threading.Thread(target=lambda: http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                              .request("GET", "/v1/stream?conv_id=left&from=0"), daemon=True)
    reader.start()
    time.sleep(0.5)
    t = time.perf_counter()
    server.stop()
    return {"idle_stop_s": idle_s, "stop_with_resumable_stream_s": time.perf_counter() - t}


def r3(model: Path) -> dict:
    pool = ModelPool.start(PoolConfig(models={"m": ModelSpec(model_path=model, context_size=512, threads=1)}))
    pool.inject_fault("m", Fault.slow_load(1.0))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})

    def parked() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=120)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json",
                                                             "X-Conversation-Id": "parked"})
        conn.getresponse().read()
    waiter = threading.Thread(target=parked, daemon=True)
    waiter.start()
    time.sleep(1.0)
    t = time.perf_counter()
    pool.stop()
    stop_s = time.perf_counter() - t
    waiter.join(30)
    return {"pool_stop_with_parked_request_s": stop_s, "parked_request_answered": not waiter.is_alive()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model or fetch_model(quiet=True)
    cfg = ServerConfig(model_path=model, parallel=2, context_size=2048, threads=args.threads)
    with LlamaServer.start(cfg) as server:
        stream(server.port, 8, None)  # warm up
        out = {"R1": r1(server, args.rounds, args.tokens)}
    out["R2"] = r2(cfg)
    out["R3"] = r3(model)
    print(f"model {model.name}; {args.rounds} rounds of {args.tokens} tokens")
    print(f"R1 stream with X-Conversation-Id {out['R1']['with_tok_s']:.1f} tok/s, without {out['R1']['without_tok_s']:.1f}"
          f" tok/s: ratio {out['R1']['ratio']:.3f} (goal >= 0.98)")
    print(f"R2 stop() idle {out['R2']['idle_stop_s']:.2f} s; with a resumable stream (client gone) and a reader "
          f"{out['R2']['stop_with_resumable_stream_s']:.2f} s")
    print(f"R3 pool stop() with a resumable request parked behind a 1-minute load: "
          f"{out['R3']['pool_stop_with_parked_request_s']:.2f} s (request answered: {out['R3']['parked_request_answered']})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
