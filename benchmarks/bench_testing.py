"""Start-to-ready of the test fixtures: the fake server and the real server on a tiny model.

    python benchmarks/bench_testing.py [--cycles 30] [--json OUT]

Times ``FakeServer.start()`` and ``LlamaServer.start()`` on a generated tiny model (what the
``llamaproc_fake_server`` and ``llamaproc_server`` fixtures do), each followed by one
request and ``stop()``, interleaved. Goals: fake p50 <= 50 ms, real tiny-model p50 <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from llamaproc import LlamaServer, ServerConfig
from llamaproc.testing import FakeServer, make_tiny_model


def one_request(url: str) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_model(Path(tmp) / "tiny.gguf")
        config = ServerConfig(model_path=model, context_size=512, threads=1, parallel=2)
        starts: dict[str, list[float]] = {"fake": [], "real": []}
        for _ in range(args.cycles):
            for side in ("fake", "real"):
                t0 = time.perf_counter()
                server = FakeServer.start() if side == "fake" else LlamaServer.start(config)
                starts[side].append(time.perf_counter() - t0)
                one_request(server.url)
                server.stop()
    summary = {}
    for side, values in starts.items():
        ordered = sorted(values)
        summary[side] = {"p50_ms": statistics.median(values) * 1e3, "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1e3}
    print(f"start-to-ready over {args.cycles} cycles:")
    print(f"  fake server      p50 {summary['fake']['p50_ms']:6.1f} ms  p95 {summary['fake']['p95_ms']:6.1f} ms  (goal p50 <= 50 ms)")
    print(f"  real tiny model  p50 {summary['real']['p50_ms']:6.1f} ms  p95 {summary['real']['p95_ms']:6.1f} ms  (goal p50 <= 300 ms)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
