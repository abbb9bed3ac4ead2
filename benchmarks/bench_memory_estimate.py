"""How close llamaproc's memory estimate comes to what a load holds, per CPU variant.

    python benchmarks/bench_memory_estimate.py [--variants auto|NAME,NAME] [--quick] [--json OUT]

For each model (a generated tiny model in F32 and Q4_0, SmolLM2-135M in its Q4_1 original and
requantized to Q4_0 and Q8_0) at two context sizes, it estimates the configuration with nothing
measured (llamaproc.estimate_memory: llama.cpp's dry run), loads it, and prints the estimate,
what the load holds (llama.cpp's accounting of its buffers: weights, KV cache, compute) and
their ratio. Q4_0 and Q8_0 weights are repacked by the CPU backend on AVX2/AVX-512 (a second
copy beside the mapped file); Q4_1 and F32 are not (AMX, on CPUs that have it, repacks Q4_1 too).
``--quick`` measures the tiny models only. It exits non-zero if any estimate is off by more
than 15 %.

On a portable build (-DLLAMAPROC_PORTABLE=ON) each CPU variant runs in its own process
(LLAMAPROC_CPU_VARIANT): ``auto`` picks AMX where the CPU has it, one AVX-512 level, AVX2
(haswell) and plain x86-64. On a native build it measures the one variant built in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 2**20
CONTEXTS = ((1024, 1), (4096, 4))  # (context size, slots)


def models(folder: Path, quick: bool) -> dict[str, Path]:
    from llamaproc import quantize
    from llamaproc.default_model import fetch_model
    from llamaproc.testing import make_tiny_model

    tiny = make_tiny_model(folder / "tiny-f32.gguf", n_embd=256, n_ff=512, n_layers=4, n_vocab=2048)
    out = {"tiny F32": tiny, "tiny Q4_0": quantize(tiny, folder / "tiny-q4_0.gguf", "Q4_0").destination}
    if quick:
        return out
    smollm2 = fetch_model(quiet=True)
    out["SmolLM2 Q4_1"] = smollm2
    for q in ("Q4_0", "Q8_0"):
        out[f"SmolLM2 {q}"] = quantize(smollm2, folder / f"smollm2-{q}.gguf", q, allow_requantize=True).destination
    return out


def measure(paths: dict[str, str]) -> dict:
    """In this process: estimate and load each model at each context size."""
    from llamaproc import LlamaServer, ServerConfig, estimate_memory
    from llamaproc._native import core
    from llamaproc.memory import forget_measurements, set_measurements_file

    set_measurements_file(None)
    rows = []
    for name, path in paths.items():
        for ctx, slots in CONTEXTS:
            forget_measurements()
            cfg = ServerConfig(model_path=path, threads=1, parallel=slots, context_size=ctx)
            est = estimate_memory(cfg)
            with LlamaServer.start(cfg) as server:
                m = server.metrics()
            rows.append({"model": name, "context": ctx, "slots": slots, "estimate": est.estimated_bytes,
                         "held": m.model_bytes + m.kv_cache_bytes + m.compute_bytes,
                         "estimate_weights": est.model_bytes, "held_weights": m.model_bytes,
                         "estimate_compute": est.compute_bytes, "held_compute": m.compute_bytes})
    variant = core.system_info()["cpu_variant"]
    return {"variant": variant["name"] if variant else "native", "rows": rows}


def variants(choice: str) -> list[str | None]:
    from llamaproc._native import core

    info = core.system_info()["cpu_variant"]
    if info is None:
        return [None]
    if choice != "auto":
        return list(choice.split(","))
    runnable = {n for n, s in info["available"].items() if s > 0}
    picked = [v for v in ("sapphirerapids",) if v in runnable]
    picked += [v for v in ("zen4", "icelake", "skylakex") if v in runnable][:1]
    picked += [v for v in ("haswell", "x64") if v in runnable]
    return picked


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="auto")
    ap.add_argument("--quick", action="store_true", help="the tiny models only")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = {k: str(v) for k, v in models(Path(tmp), args.quick).items()}
        results = []
        for variant in variants(args.variants):
            env = {k: v for k, v in os.environ.items() if k != "LLAMAPROC_CPU_VARIANT"}
            if variant:
                env["LLAMAPROC_CPU_VARIANT"] = variant
            r = subprocess.run([sys.executable, __file__, "--child", json.dumps(paths)], env=env, capture_output=True,
                               text=True, timeout=900)
            if r.returncode != 0:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print("| CPU variant | model | context / slots | estimate MiB | held MiB | estimate / held |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for res in results:
        for row in res["rows"]:
            ratio = row["estimate"] / row["held"]
            worst = max(worst, abs(ratio - 1))
            print(f"| {res['variant']} | {row['model']} | {row['context']} / {row['slots']} | "
                  f"{row['estimate'] / MiB:.1f} | {row['held'] / MiB:.1f} | {ratio:.3f} |")
    print(f"\nlargest deviation: {worst * 100:.1f} % (target: within 15 %)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if worst <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
