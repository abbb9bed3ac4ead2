"""Start/stop cycles with a request each: do threads, file descriptors and memory come back?

    python benchmarks/cycles.py                       # 100 cycles on SmolLM2 (fetched once)
    python benchmarks/cycles.py --model tiny --cycles 100
    python benchmarks/cycles.py --request none|http|direct|stream   # by elimination

Each cycle: `LlamaServer.start()`, one request (a chat completion over HTTP by default),
`stop()`. After every cycle it records the process's threads (/proc/self/task), open file
descriptors (/proc/self/fd), RSS, and where memory sits: glibc's own count of bytes in use
(`mallinfo2`: `uordblks` + `hblkhd`), the heap it holds but does not use (`fordblks`), and the
anonymous vs file-backed resident pages (/proc/self/smaps_rollup). The first cycle is a
warm-up (it loads the backend, the CPU feature tables, Python modules); growth is measured
over the cycles after it, as the least-squares slope per cycle.

A leak in native code shows as `malloc in use` growing with RSS; memory that glibc keeps
after free (fragmentation) shows as RSS growing while `in use` stays flat.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from llamaproc import LlamaServer, ServerConfig


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        return libc
    except (OSError, AttributeError):
        return None


LIBC = _libc()


def snapshot() -> dict[str, int]:
    """Threads, fds and memory of this process now."""
    out = {"threads": len(os.listdir("/proc/self/task")), "fds": len(os.listdir("/proc/self/fd"))}
    with open("/proc/self/statm") as fh:
        out["rss"] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("Anonymous", "Rss"):
                    out["anon" if key == "Anonymous" else "rss_smaps"] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    if LIBC is not None:
        mi = LIBC.mallinfo2()
        out["malloc_in_use"] = mi.uordblks + mi.hblkhd
        out["malloc_free_held"] = mi.fordblks
        out["malloc_arena"] = mi.arena
    return out


def slope(values: list[float]) -> float:
    """Least-squares slope per step."""
    n = len(values)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2
    my = sum(values) / n
    num = sum((i - mx) * (v - my) for i, v in enumerate(values))
    den = sum((i - mx) ** 2 for i in range(n))
    return num / den


def request(server: LlamaServer, kind: str) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    if kind == "http":
        body = json.dumps({"messages": messages, "max_tokens": 8}).encode()
        req = urllib.request.Request(server.url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            json.load(resp)["choices"][0]["message"]
    elif kind == "stream":
        body = json.dumps({"messages": messages, "max_tokens": 8, "stream": True}).encode()
        req = urllib.request.Request(server.url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert b"[DONE]" in resp.read()
    elif kind == "direct":
        server.direct.chat.completions.create(messages=messages, max_tokens=8)
    elif kind != "none":
        raise ValueError(kind)


def run(model: Path, cycles: int, kind: str = "http", threads: int = 1, context_size: int = 1024,
        progress: bool = False) -> dict[str, Any]:
    cfg = ServerConfig(model_path=model, threads=threads, context_size=context_size, parallel=1)
    rows: list[dict[str, int]] = []
    started = time.monotonic()
    before = snapshot()
    for i in range(cycles + 1):
        server = LlamaServer.start(cfg)
        loaded = snapshot()
        request(server, kind)
        server.stop()
        del server
        gc.collect()
        row = snapshot()
        row["loaded_rss"] = loaded["rss"]
        rows.append(row)
        if progress and (i % 10 == 0 or i == cycles):
            print(f"cycle {i}: threads {row['threads']} fds {row['fds']} rss {row['rss'] / 2**20:.1f} MiB "
                  f"malloc in use {row.get('malloc_in_use', 0) / 2**20:.1f} MiB", flush=True)
    warm, measured = rows[0], rows[1:]
    mib = 2**20

    def per_cycle(key: str) -> float | None:
        if key not in warm:
            return None
        return round(slope([r[key] / mib for r in rows]) if len(rows) > 2 else 0.0, 4)

    return {
        "model": str(model), "cycles": cycles, "request": kind, "threads_setting": threads,
        "seconds": round(time.monotonic() - started, 1),
        "before": before, "after_warmup": warm, "last": rows[-1],
        "threads_baseline": warm["threads"], "threads_max_after_stop": max(r["threads"] for r in measured),
        "threads_min_after_stop": min(r["threads"] for r in measured),
        "fds_baseline": warm["fds"], "fds_max_after_stop": max(r["fds"] for r in measured),
        "fds_min_after_stop": min(r["fds"] for r in measured),
        "rss_growth_mib_per_cycle": per_cycle("rss"),
        "anon_growth_mib_per_cycle": per_cycle("anon"),
        "malloc_in_use_growth_mib_per_cycle": per_cycle("malloc_in_use"),
        "malloc_free_held_growth_mib_per_cycle": per_cycle("malloc_free_held"),
        "rss_total_growth_mib": round((rows[-1]["rss"] - warm["rss"]) / mib, 2),
        "malloc_in_use_total_growth_mib": round((rows[-1].get("malloc_in_use", 0) - warm.get("malloc_in_use", 0)) / mib, 2),
        "rss_while_loaded_mib": round(max(r["loaded_rss"] - r["rss"] for r in measured) / mib, 1),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="'smollm2' (fetched once), 'tiny' (generated) or a path")
    p.add_argument("--cycles", type=int, default=100)
    p.add_argument("--request", default="http", choices=["none", "http", "stream", "direct"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = p.parse_args(argv)
    if args.model == "smollm2":
        from llamaproc.default_model import fetch_model

        model = fetch_model(quiet=True)
    elif args.model == "tiny":
        import tempfile

        from llamaproc.testing import make_tiny_model

        model = make_tiny_model(Path(tempfile.mkdtemp(prefix="cycles-")) / "tiny.gguf")
    else:
        model = Path(args.model)
    result = run(model, args.cycles, args.request, args.threads, progress=True)
    result["command"] = " ".join(["benchmarks/cycles.py"] + (argv if argv is not None else sys.argv[1:]))
    text = json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    ok = (result["threads_max_after_stop"] == result["threads_baseline"] and
          result["fds_max_after_stop"] == result["fds_baseline"] and (result["rss_growth_mib_per_cycle"] or 0) < 1.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
