"""Embedded llamaproc server vs upstream llama-server run as a subprocess, same model, same flags.

    python benchmarks/bench_server.py [--model PATH] [--threads 2] [--rounds 3] [--clients 1,4,8]

Measures, interleaved round by round so that machine noise hits both sides alike:
  * start-to-ready: from the start call until /health answers 200 (subprocess: spawn + load +
    health polling every 10 ms, the way a process manager does it);
  * single-stream generation: one chat request, 128 tokens, wall-clock tokens/s;
  * aggregate generation with N concurrent clients (128 tokens each);
  * RSS after load (embedded: growth of this process; subprocess: the child's RSS).
Prints a table with ratios embedded/upstream; --json writes the raw figures. The upstream
binary is built on demand by benchmarks/upstream.py (OpenMP on, native, AMX fix only).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import build_upstream  # noqa: E402

from llamaproc import LlamaServer, ServerConfig  # noqa: E402
from llamaproc.models import fetch_model  # noqa: E402

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


def chat(url: str, max_tokens: int) -> int:
    body = json.dumps({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True, "cache_prompt": False}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as res:
        return json.load(res)["usage"]["completion_tokens"]


LONG_PROMPT = " ".join(f"Line {i}: the keeper lit lamp number {i} and watched the waves." for i in range(40))


def server_timings(url: str, max_tokens: int) -> tuple[float, float, int]:
    """Prompt and generation tokens/s as the server itself times them (~512-token prompt)."""
    body = json.dumps({"prompt": LONG_PROMPT, "n_predict": max_tokens, "ignore_eos": True, "cache_prompt": False,
                       "temperature": 0}).encode()
    req = urllib.request.Request(url + "/completion", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as res:
        t = json.load(res)["timings"]
    return t["prompt_per_second"], t["predicted_per_second"], t["prompt_n"]


def generation_rate(url: str, clients: int, max_tokens: int) -> float:
    """Aggregate generated tokens per second of `clients` concurrent requests."""
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


class Embedded:
    name = "llamaproc"

    def __init__(self, args: list[str]) -> None:
        self.args = args

    def start(self) -> float:
        rss0 = rss_of()
        t0 = time.perf_counter()
        self.server = LlamaServer.from_args(self.args, use_env=False)
        took = time.perf_counter() - t0
        self.rss = rss_of() - rss0
        self.url = self.server.url
        return took

    def stop(self) -> None:
        self.server.stop()


class Subprocess:
    name = "llama-server"

    def __init__(self, binary: Path, args: list[str]) -> None:
        self.binary, self.args = binary, args

    def start(self) -> float:
        port = free_port()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(self.binary), *self.args, "--port", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("llama-server exited during startup")
                time.sleep(0.01)
        took = time.perf_counter() - t0
        self.rss = rss_of(self.proc.pid)
        return took

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF to serve (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--extra", default="", help="more llama-server flags for both sides")
    parser.add_argument("--no-upstream", action="store_true", help="measure llamaproc alone")
    parser.add_argument("--upstream-bin", type=Path, help="use this llama-server binary")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()

    model = args.model or fetch_model(quiet=True)
    flags = ["-m", str(model), "-t", str(args.threads), "-np", str(args.parallel), "-c", "4096", "-kvu",
             "--host", "127.0.0.1", *args.extra.split()]
    sides: list = [Embedded(flags + ["--port", "0"])]
    if not args.no_upstream:
        binary = args.upstream_bin or build_upstream() / "llama-server"
        sides.append(Subprocess(binary, flags))
    clients = [int(c) for c in args.clients.split(",")]
    figures: dict[str, dict[str, list[float]]] = {s.name: {} for s in sides}

    def record(side, key, value):
        figures[side.name].setdefault(key, []).append(value)

    for rnd in range(args.rounds):
        for side in sides if rnd % 2 == 0 else reversed(sides):
            record(side, "start_to_ready_s", side.start())
            record(side, "rss_after_load_mib", side.rss / 2**20)
            chat(side.url, 8)  # warm-up
            pp, tg, n_prompt = server_timings(side.url, args.tokens)
            record(side, f"server_pp{n_prompt}_tok_s", pp)
            record(side, f"server_tg{args.tokens}_tok_s", tg)
            record(side, "single_tok_s", generation_rate(side.url, 1, args.tokens))
            for n in clients:
                if n > 1:
                    record(side, f"aggregate_{n}_tok_s", generation_rate(side.url, n, args.tokens))
            side.stop()
            print(f"round {rnd + 1}: {side.name} done", file=sys.stderr, flush=True)

    keys = list(figures[sides[0].name])
    print(f"\nmodel {model.name}, threads {args.threads}, {args.rounds} rounds (median)\n")
    header = f"| {'figure':<24} | " + " | ".join(f"{s.name:>12}" for s in sides)
    print(header + (" | ratio |" if len(sides) > 1 else " |"))
    print("|" + "-" * 26 + "|" + "|".join("-" * 14 for _ in sides) + ("|-------|" if len(sides) > 1 else "|"))
    for key in keys:
        meds = [statistics.median(figures[s.name][key]) for s in sides]
        row = f"| {key:<24} | " + " | ".join(f"{m:12.3f}" for m in meds)
        print(row + (f" | {meds[0] / meds[1]:5.2f} |" if len(sides) > 1 and meds[1] else " |"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
