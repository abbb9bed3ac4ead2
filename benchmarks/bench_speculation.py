"""Speculation: llamaproc's default (adaptive n-gram drafts) against upstream llama-server's
default flags and against llamaproc with speculation off, on input-grounded and open-ended work.

    python benchmarks/bench_speculation.py [--models q4_1,f16] [--rounds 2] [--tokens 256]
                                           [--threads 2] [--json OUT] [--quick]

Offline: the prompts come from the installed Python (spec_workloads.py). The models are the
registry's SmolLM2-135M-Instruct Q4_1 and, unless ``--models q4_1``, the same weights at F16
made from it with llamaproc.quant (decoding it is memory-bound, as with larger models; no larger
model is packaged on the registries this project may use).

Sides, all three running at once, each prompt sent to each side in turn (the order rotates per
prompt and round), temperature 0, ``max_tokens`` = --tokens:
    upstream   build/upstream/bin/llama-server -m M -c 4096 -t T (its defaults otherwise)
    off        llamaproc, ServerConfig(speculation=False, context_size=4096, threads=T)
    default    llamaproc, ServerConfig(context_size=4096, threads=T)
Per prompt: full response time (the median of the rounds) and decode tok/s from ``timings``.
At temperature 0 the sides usually write the same answer, but not always the same length (the
prompt cache changes the last bits of the logits, see S4), so a side's speed on a prompt is its
response rate: generated tokens / full response time.

S1  default vs upstream, repetitive prompts: geometric mean of per-prompt response-rate ratios
    (default / upstream) with min and max, and of decode tok/s ratios. Goal: >= 1.3.
S2  the same on the open-ended control set. Goal: >= 0.98.
    Prompts whose speculation-off output loops (a 40-character run that occurs 3 times) are
    listed apart and left out of S1/S2: a looping tiny model inflates speed-ups.
S3  4 concurrent streams (2 repetitive + 2 open-ended): tokens/s of default / upstream.
    Goal: >= 1.0.
S4  temperature 0, default vs off, each prompt replayed once more on both without the prompt
    cache (a cache hit changes how the prompt's last token is evaluated, and with it the last
    bits of the logits, whatever the speculation): prompts whose tokens differ; for each, the
    first differing token and the top-2 log-probability gap of the speculation-off run there.
S5  the step-cost curve c(n)/c(1) from llama-bench (pp1..pp16): what verification of a draft
    of n - 1 tokens costs in single-token steps on this machine, per model.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import Process  # noqa: E402
from spec_workloads import OPEN, REPETITIVE, Workload, all_workloads  # noqa: E402
from upstream import build_upstream  # noqa: E402

from llamaproc import LlamaServer, ServerConfig  # noqa: E402
from llamaproc.default_model import fetch_model  # noqa: E402
from llamaproc.quant import quantize  # noqa: E402

CTX = 4096


def _post(url: str, path: str, body: dict, timeout: float = 900) -> dict:
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def chat(url: str, messages: list[dict], tokens: int) -> dict:
    t0 = time.perf_counter()
    body = _post(url, "/v1/chat/completions", {"messages": messages, "max_tokens": tokens, "temperature": 0})
    elapsed = time.perf_counter() - t0
    timings = body.get("timings", {})
    return {"seconds": elapsed, "text": body["choices"][0]["message"]["content"],
            "tokens": timings.get("predicted_n", 0), "decode_tok_s": timings.get("predicted_per_second", 0.0),
            "drafted": timings.get("draft_n", 0), "accepted": timings.get("draft_n_accepted", 0)}


def loops(text: str) -> bool:
    """True when the text repeats itself: some 40-character run occurs three times."""
    return any(text.count(text[i:i + 40]) >= 3 for i in range(0, max(0, len(text) - 40), 10))


def rate(side: dict) -> float:
    """Generated tokens per second of full response time."""
    return side["tokens"] / side["seconds"]


def gmean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


class Embedded:
    def __init__(self, name: str, config: ServerConfig) -> None:
        self.name, self.config = name, config

    def start(self) -> None:
        self.server = LlamaServer.start(self.config)
        self.url = self.server.url

    def stop(self) -> None:
        self.server.stop()


def first_difference(on: Embedded, off: Embedded, w: Workload, tokens: int) -> dict | None:
    """Where the default's tokens leave the speculation-off run's (None: they do not), and how
    close the off run's top two candidates were there (with n_probs it decodes without drafts)."""
    prompt = _post(off.url, "/apply-template", {"messages": w.messages})["prompt"]
    ids = _post(off.url, "/tokenize", {"content": prompt, "add_special": True, "parse_special": True})["tokens"]
    body = {"prompt": ids, "n_predict": tokens, "temperature": 0, "return_tokens": True, "cache_prompt": False}
    a = _post(on.url, "/completion", body)["tokens"]
    ref = _post(off.url, "/completion", {**body, "n_probs": 2})
    b = ref["tokens"]
    i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if i is None:
        return None if len(a) == len(b) else {"index": min(len(a), len(b)), "lengths": [len(a), len(b)]}
    top = ref["completion_probabilities"][i]["top_logprobs"]
    gap = top[0]["logprob"] - top[1]["logprob"] if len(top) > 1 else float("inf")
    return {"index": i, "off_token": top[0]["token"], "default_token": next(
        (t["token"] for t in top if t["id"] == a[i]), f"id {a[i]} (not in the off run's top 2)"),
        "top2_logprob_gap": gap}


def concurrent(url: str, workloads: list[Workload], tokens: int) -> float:
    """Generated tokens per wall second with one stream per workload at once."""
    counts = [0] * len(workloads)

    def one(i: int) -> None:
        counts[i] = chat(url, workloads[i].messages, tokens)["tokens"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(workloads))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def cost_curve(bin_dir: Path, model: Path, threads: int) -> dict[int, float]:
    sizes = [1, 2, 3, 5, 9, 17]
    r = subprocess.run([str(bin_dir / "llama-bench"), "-m", str(model), "-t", str(threads), "-n", "0", "-r", "3",
                        "-p", ",".join(map(str, sizes)), "-o", "json"], capture_output=True, text=True, check=True)
    rows = json.loads(r.stdout)
    ms = {int(row["n_prompt"]): 1000.0 * int(row["n_prompt"]) / float(row["avg_ts"]) for row in rows}
    return {n: ms[n] / ms[1] for n in sizes}


def run_model(label: str, model: Path, args: argparse.Namespace, bin_dir: Path | None) -> dict:
    workloads = all_workloads()
    if args.quick:
        workloads = [w for w in workloads if w.kind == REPETITIVE][:2] + [w for w in workloads if w.kind == OPEN][:1]
    base = dict(model_path=model, context_size=CTX, threads=args.threads)
    sides: list = [Embedded("off", ServerConfig(speculation=False, **base)), Embedded("default", ServerConfig(**base))]
    if bin_dir is not None:
        sides.insert(0, Process("upstream", [str(bin_dir / "llama-server"), "-m", str(model), "-c", str(CTX),
                                             "-t", str(args.threads), "--host", "127.0.0.1"]))
    for side in sides:
        side.start()
    try:
        for side in sides:  # warm up each (first request pays one-time costs)
            chat(side.url, [{"role": "user", "content": "Hello"}], 8)
        runs: dict[str, dict[str, list[dict]]] = {s.name: {w.name: [] for w in workloads} for s in sides}
        for rnd in range(args.rounds):
            for i, w in enumerate(workloads):
                order = sides[(i + rnd) % len(sides):] + sides[:(i + rnd) % len(sides)]
                for side in order:
                    runs[side.name][w.name].append(chat(side.url, w.messages, args.tokens))
            print(f"[{label}] round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        per_prompt = []
        for w in workloads:
            row: dict = {"name": w.name, "kind": w.kind}
            for side in sides:
                rs = runs[side.name][w.name]
                row[side.name] = {"seconds": statistics.median(r["seconds"] for r in rs),
                                  "decode_tok_s": statistics.median(r["decode_tok_s"] for r in rs),
                                  "tokens": rs[0]["tokens"], "drafted": rs[0]["drafted"], "accepted": rs[0]["accepted"]}
            row["loops"] = loops(runs["off"][w.name][0]["text"])
            per_prompt.append(row)
        on = next(s for s in sides if s.name == "default")
        off = next(s for s in sides if s.name == "off")
        differences = {}
        for row, w in zip(per_prompt, workloads):
            d = first_difference(on, off, w, args.tokens)
            row["text_differs"] = d is not None
            if d is not None:
                differences[w.name] = d
        mix = [w for w in workloads if w.kind == REPETITIVE][:2] + [w for w in workloads if w.kind == OPEN][:2]
        streams: dict[str, list[float]] = {s.name: [] for s in sides}
        for rnd in range(args.rounds):
            for side in (sides if rnd % 2 == 0 else list(reversed(sides))):
                streams[side.name].append(concurrent(side.url, mix, args.tokens))
    finally:
        for side in sides:
            side.stop()

    reference = "upstream" if bin_dir is not None else "off"
    summary: dict = {"reference": reference}
    for kind in (REPETITIVE, OPEN):
        rows = [r for r in per_prompt if r["kind"] == kind and not r["loops"]]
        for side in ("default", "off"):
            ratios = [rate(r[side]) / rate(r[reference]) for r in rows]
            decode = [r[side]["decode_tok_s"] / r[reference]["decode_tok_s"] for r in rows if r[reference]["decode_tok_s"]]
            if ratios:
                summary[f"{kind}:{side}"] = {"gmean": gmean(ratios), "min": min(ratios), "max": max(ratios),
                                             "decode_gmean": gmean(decode) if decode else None, "prompts": len(rows)}
    loop_rows = [r for r in per_prompt if r["loops"]]
    summary["loops"] = {r["name"]: round(rate(r["default"]) / rate(r[reference]), 3) for r in loop_rows}
    summary["streams4"] = {name: statistics.median(v) for name, v in streams.items()}
    summary["streams4_ratio"] = summary["streams4"]["default"] / summary["streams4"][reference]
    summary["text_differs"] = f"{len(differences)} of {len(per_prompt)}"
    result = {"model": str(model), "per_prompt": per_prompt, "summary": summary, "differences": differences}
    if bin_dir is not None and not args.quick:
        result["cost_curve"] = cost_curve(bin_dir, model, args.threads)
    return result


def report(label: str, r: dict) -> None:
    s = r["summary"]
    print(f"\n== {label}: {r['model']}  (ratios against {s['reference']}; > 1 is faster)")
    print(f"{'prompt':30s} {'ref s':>6s} {'off s':>6s} {'dflt s':>6s} {'x':>5s} {'tokens':>7s}  drafted/accepted"
          "  loops  differs")
    for row in r["per_prompt"]:
        ref = row[s["reference"]]["seconds"]
        same = row["off"]["tokens"] == row["default"]["tokens"] == row[s["reference"]]["tokens"]
        tokens = str(row["default"]["tokens"]) if same else "/".join(str(row[k]["tokens"]) for k in (s["reference"], "off", "default"))
        print(f"{row['name']:30s} {ref:6.2f} {row['off']['seconds']:6.2f} {row['default']['seconds']:6.2f} "
              f"{rate(row['default']) / rate(row[s['reference']]):5.2f} {tokens:>7s}  {row['default']['drafted']:5d}/{row['default']['accepted']:<5d}"
              f"       {'yes' if row['loops'] else '-':5s}  {'yes' if row['text_differs'] else '-'}")
    for key in (f"{REPETITIVE}:default", f"{OPEN}:default", f"{REPETITIVE}:off", f"{OPEN}:off"):
        if key in s:
            v = s[key]
            print(f"{key:22s} response tok/s gmean {v['gmean']:.3f} (min {v['min']:.2f}, max {v['max']:.2f}, "
                  f"{v['prompts']} prompts); decode tok/s gmean {v['decode_gmean'] or float('nan'):.3f}")
    print(f"greedy-loop prompts (left out above), default speed-up: {s['loops'] or 'none'}")
    print(f"4 streams tok/s: {s['streams4']}  default/{s['reference']} = {s['streams4_ratio']:.3f}")
    print(f"tokens differ from speculation off (replayed without the prompt cache): {s['text_differs']}")
    for name, d in r["differences"].items():
        print(f"  {name}: {d}")
    if "cost_curve" in r:
        print("step cost c(n)/c(1): " + ", ".join(f"n={n}: {v:.2f}" for n, v in r["cost_curve"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="q4_1,f16", help="q4_1 (the registry model), f16 (made from it)")
    parser.add_argument("--model", type=Path, help="benchmark this GGUF instead")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-upstream", action="store_true", help="compare with llamaproc's speculation off only")
    parser.add_argument("--quick", action="store_true", help="3 prompts, 1 round, 32 tokens (a smoke run)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.tokens = 1, 32
    bin_dir = None if args.no_upstream else build_upstream()
    models: dict[str, Path] = {}
    if args.model:
        models["model"] = args.model
    else:
        q4 = fetch_model(quiet=True)
        for name in args.models.split(","):
            if name == "q4_1":
                models[name] = q4
            elif name == "f16":
                f16 = Path(__file__).resolve().parent.parent / "build" / "models" / "SmolLM2-135M-Instruct.F16.gguf"
                if not f16.is_file():
                    f16.parent.mkdir(parents=True, exist_ok=True)
                    quantize(q4, f16, "F16", allow_requantize=True)
                models[name] = f16
            else:
                parser.error(f"unknown model {name!r}")
    results = {}
    for label, model in models.items():
        results[label] = run_model(label, model, args, bin_dir)
        report(label, results[label])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
