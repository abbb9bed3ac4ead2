"""Quantization levels side by side: size, load time, speed and quality against an F16 reference.

    python benchmarks/bench_quant.py                 # SmolLM2-135M, 8 levels, ~10k scored tokens
    python benchmarks/bench_quant.py --quick         # 3 levels, ~1k scored tokens
    python benchmarks/bench_quant.py --model M.gguf --types F16,Q8_0,Q4_K_M --more IQ4_XS,Q5_0

From the source model an F16 reference is made with llamaproc.quantize (allow_requantize: when
the source is itself quantized, as SmolLM2's Q4_1 file is, the "reference" is a dequantized
copy of it, and the report says so). Each level is quantized from that reference and measured:

* file size, bits per weight, and the actual tensor type mix (llamaproc.inspect_model);
* load time: LlamaServer.start() until ready;
* prompt processing tokens/s (512-token prompt) and generation tokens/s (128 tokens from a
  one-token prompt), as the embedded server times them (/completion timings) — the same two
  figures as llama-bench's pp512 and tg128 — best of --repeats runs;
* quality on the evaluation text: perplexity, mean KL divergence of the full next-token
  distribution from the reference (nats), its 99th percentile, and top-1 agreement, over
  chunks of --ctx tokens with the second half of each chunk scored (as llama-perplexity does).

Evaluation text: CPython's reference documentation bundled in the standard library
(``pydoc_data.topics``, topics in sorted order), tokenized by the model; its Python version
and SHA-256 are printed in the report. Outputs go to --out: quant.md, quant.csv and the plots
quality_vs_size.png and speed_vs_size.png.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from llamaproc import Evaluator, LlamaServer, QualityStats, ServerConfig, inspect_model, quantize
from llamaproc.default_model import fetch_model

DEFAULT_TYPES = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
QUICK_TYPES = ["F16", "Q8_0", "Q4_0"]


def evaluation_text() -> tuple[str, str]:
    import pydoc_data.topics as topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return text, hashlib.sha256(text.encode()).hexdigest()


def _complete(url: str, prompt: list[int], n_predict: int) -> dict:
    body = json.dumps({"prompt": prompt, "n_predict": n_predict, "ignore_eos": True, "cache_prompt": False,
                       "temperature": 0}).encode()
    req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as res:
        return json.load(res)["timings"]


def measure_speed(path: Path, prompt_tokens: list[int], threads: int, n_predict: int, repeats: int) -> dict:
    """Load time, then llama-bench's two figures through the server: pp (the 512-token prompt)
    and tg (n_predict tokens from a one-token prompt, i.e. from an empty context)."""
    cfg = ServerConfig(model_path=path, threads=threads, parallel=1, context_size=2048, batch_size=512)
    t0 = time.perf_counter()
    server = LlamaServer.start(cfg)
    load_s = time.perf_counter() - t0
    pp, tg = [], []
    try:
        for _ in range(repeats):
            pp.append(_complete(server.url, prompt_tokens, 1)["prompt_per_second"])
            tg.append(_complete(server.url, prompt_tokens[:1], n_predict)["predicted_per_second"])
    finally:
        server.stop()
    return {"load_s": load_s, "pp_tok_s": max(pp), "tg_tok_s": max(tg)}


def plot(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["size_mib"] for r in rows]
    labels = [r["type"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    ax[0].plot(sizes, [max(r["mean_kl"], 1e-6) for r in rows], "o-")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("file size (MiB)")
    ax[0].set_ylabel("mean KL vs reference (nats, log)")
    ax2 = ax[1]
    ax2.plot(sizes, [r["top1_agreement"] * 100 for r in rows], "s-", color="tab:green")
    ax2.set_xlabel("file size (MiB)")
    ax2.set_ylabel("top-1 agreement with reference (%)")
    for a, key in ((ax[0], "mean_kl"), (ax2, "top1_agreement")):
        for r, label in zip(rows, labels):
            y = max(r[key], 1e-6) if key == "mean_kl" else r[key] * 100
            a.annotate(label, (r["size_mib"], y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    fig.suptitle(f"quality vs size — {title}")
    fig.tight_layout()
    fig.savefig(out / "quality_vs_size.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(sizes, [r["pp_tok_s"] for r in rows], "o-", label="prompt (pp512)")
    ax.plot(sizes, [r["tg_tok_s"] for r in rows], "s-", label="generation (tg128)")
    for r, label in zip(rows, labels):
        ax.annotate(label, (r["size_mib"], r["tg_tok_s"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("file size (MiB)")
    ax.set_ylabel("tokens/s")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"speed vs size — {title}")
    fig.tight_layout()
    fig.savefig(out / "speed_vs_size.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="source GGUF (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--types", help="comma-separated levels (default: " + ",".join(DEFAULT_TYPES) + ")")
    parser.add_argument("--more", default="", help="extra levels to add, comma-separated")
    parser.add_argument("--quick", action="store_true", help="3 levels and ~1k scored tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=512, help="evaluation chunk size")
    parser.add_argument("--eval-tokens", type=int, help="scored tokens (default 10240, quick 1024)")
    parser.add_argument("--repeats", type=int, help="speed runs per level, best kept (default 2, quick 1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "quant")
    args = parser.parse_args(argv)

    types = (args.types.split(",") if args.types else (QUICK_TYPES if args.quick else DEFAULT_TYPES))
    types += [t for t in args.more.split(",") if t]
    scored_target = args.eval_tokens or (1024 if args.quick else 10240)
    repeats = args.repeats or (1 if args.quick else 2)
    n_predict = 32 if args.quick else 128
    out: Path = args.out
    work = out / "models"
    work.mkdir(parents=True, exist_ok=True)
    source = args.model or fetch_model(quiet=True)
    source_info = inspect_model(source)
    started = time.perf_counter()

    print(f"source {source.name} ({source_info.file_type}); making the F16 reference", file=sys.stderr)
    reference = quantize(source, work / "F16.gguf", "F16", allow_requantize=True, overwrite=True,
                         threads=args.threads).destination
    files = {}
    for t in types:
        files[t] = reference if t.upper() == "F16" else quantize(
            reference, work / f"{t.upper()}.gguf", t, overwrite=True, threads=args.threads).destination

    text, text_sha = evaluation_text()
    half = args.ctx // 2
    n_chunks = -(-scored_target // half)
    rows = []
    with Evaluator(reference, context_size=args.ctx, threads=args.threads) as ref_eval:
        tokens = ref_eval.tokenize(text, add_special=False)
        need = n_chunks * args.ctx
        if len(tokens) < need:
            n_chunks = len(tokens) // args.ctx
            need = n_chunks * args.ctx
        chunks = [tokens[i * args.ctx:(i + 1) * args.ctx] for i in range(n_chunks)]
        prompt512 = [int(t) for t in tokens[:512]]
        evaluators = {t: Evaluator(p, context_size=args.ctx, threads=args.threads) for t, p in files.items()}
        stats = {t: QualityStats() for t in files}
        for i, chunk in enumerate(chunks):
            ref_lp = ref_eval.logprobs(chunk)[half - 1:-1]
            targets = chunk[half:]
            for t, ev in evaluators.items():
                stats[t].add(ref_lp, ev.logprobs(chunk)[half - 1:-1], targets)
            print(f"quality: chunk {i + 1}/{len(chunks)}", file=sys.stderr, flush=True)
        for ev in evaluators.values():
            ev.close()

    for t, path in files.items():
        info = inspect_model(path)
        speed = measure_speed(path, prompt512, args.threads, n_predict, repeats)
        s = stats[t]
        rows.append({
            "type": t.upper(), "size_mib": path.stat().st_size / 2**20, "bits_per_weight": info.bits_per_weight,
            "tensor_mix": " ".join(f"{k}:{v}" for k, v in info.tensor_types.items()),
            "load_s": speed["load_s"], "pp_tok_s": speed["pp_tok_s"], "tg_tok_s": speed["tg_tok_s"],
            "perplexity": s.perplexity, "mean_kl": s.mean_kl, "kl_p99": s.kl_p99,
            "top1_agreement": s.top1_agreement, "scored_tokens": s.n,
        })
        print(f"{t}: measured", file=sys.stderr, flush=True)

    with (out / "quant.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Quantization levels of {source.name}",
        "",
        f"Reference: F16 made from `{source.name}` (nominal {source_info.file_type}, tensors "
        f"{' '.join(f'{k}:{v}' for k, v in source_info.tensor_types.items())})"
        + (" — a *dequantized copy* of a quantized file, so quality is measured against that copy, "
           "not against the original F16 weights." if source_info.file_type not in ("F16", "F32", "BF16") else "."),
        f"Evaluation text: `pydoc_data.topics` of Python {platform.python_version()} (sha256 {text_sha[:16]}…), "
        f"{len(chunks)} chunks of {args.ctx} tokens, second half of each scored: {rows[0]['scored_tokens']} tokens.",
        f"Speed: embedded server, {args.threads} threads; pp = 512-token prompt, tg = {n_predict} tokens "
        f"generated from a one-token prompt (llama-bench's pp512/tg{n_predict}); best of {repeats}.",
        "",
        "| type | MiB | bits/w | load s | pp512 t/s | tg t/s | PPL | mean KL | KL p99 | top-1 % | tensor types |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['type']} | {r['size_mib']:.1f} | {r['bits_per_weight']:.2f} | {r['load_s']:.2f} | "
                     f"{r['pp_tok_s']:.0f} | {r['tg_tok_s']:.0f} | {r['perplexity']:.3f} | {r['mean_kl']:.4f} | "
                     f"{r['kl_p99']:.3f} | {r['top1_agreement'] * 100:.1f} | {r['tensor_mix']} |")
    lines.append("")
    lines.append(f"Total time: {time.perf_counter() - started:.0f} s.")
    (out / "quant.md").write_text("\n".join(lines) + "\n")
    plot(rows, out, source.name)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
