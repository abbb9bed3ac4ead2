"""Decode speed of the portable build (every CPU level, the best loaded at import) against the
native build (-march=native), side by side in one run.

    python benchmarks/bench_portable.py --native PYTHON --portable PYTHON [--rounds 3] [--tokens 128]

Each PYTHON is an interpreter whose ``llamaproc`` is that build (scripts/check_portable_build.py
makes the portable one). The two alternate, round by round, each in a fresh process serving
SmolLM2-135M-Instruct Q4_1 with the default threads; the figure is the median tokens/s of the
rounds, and the median of the rounds' ratios portable/native (target: >= 0.95, docs/benchmarks.md). The machine's
speed drifts over minutes, so only the ratio of interleaved rounds means anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

ROUND = r"""
import json, sys, time
from llamaproc import LlamaServer, ServerConfig
from llamaproc._native import core
from llamaproc.default_model import fetch_model
tokens = int(sys.argv[1])
variant = core.system_info()["cpu_variant"]
with LlamaServer.start(ServerConfig(model_path=fetch_model(quiet=True), context_size=1024, parallel=1)) as s:
    s.direct.completions.create(prompt="warm up", max_tokens=8, temperature=0)
    t = time.perf_counter()
    r = s.direct.completions.create(prompt="Once upon a time", max_tokens=tokens, ignore_eos=True, temperature=0)
    dt = time.perf_counter() - t
print(json.dumps({"tok_s": r["usage"]["completion_tokens"] / dt, "variant": variant["name"] if variant else "native"}))
"""


def one_round(python: str, tokens: int) -> dict:
    r = subprocess.run([python, "-c", ROUND, str(tokens)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"{python} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native", default=sys.executable, help="interpreter with the native build")
    parser.add_argument("--portable", required=True, help="interpreter with the portable build")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--target", type=float, default=0.95, help="the ratio portable/native to reach")
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {"native": [], "portable": []}
    variant = ""
    for i in range(args.rounds):
        for name, python in (("native", args.native), ("portable", args.portable)):
            result = one_round(python, args.tokens)
            runs[name].append(result["tok_s"])
            if name == "portable":
                variant = result["variant"]
                if variant == "native":
                    raise SystemExit(f"{python} runs a native build, not the portable one")
            print(f"round {i + 1} {name:8s} {result['tok_s']:7.1f} tok/s", flush=True)
    native, portable = statistics.median(runs["native"]), statistics.median(runs["portable"])
    # each round's two runs are seconds apart: their ratio cancels most of the machine's drift
    ratio = statistics.median(p / n for p, n in zip(runs["portable"], runs["native"]))
    print(f"decode, SmolLM2-135M Q4_1, {args.tokens} tokens, median of {args.rounds} interleaved rounds:")
    print(f"  native   {native:7.1f} tok/s")
    print(f"  portable {portable:7.1f} tok/s  (CPU variant {variant})")
    print(f"  ratio    {ratio:.3f}  (median of the rounds' portable/native; target >= {args.target})  "
          f"{'OK' if ratio >= args.target else 'BELOW TARGET'}")
    return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
