"""Side by side: upstream ``llama-server FLAGS`` and ``python -m llamaproc serve FLAGS``, the same
request corpus sent to both, the answers compared by shape (status, content type, JSON keys
and value types, the sequence of SSE events). Values that differ by nature (ids, times, paths,
generated text) are not compared; every other difference must be listed in EXPLAINED with its
reason, or the script exits 1.

    python scripts/dropin_diff.py [--out docs/dropin-diff.md]

Upstream is built from the pinned source by ``benchmarks/upstream.py`` (once, into build/).
Both servers run as child processes on loopback ports, on tiny generated models (one for the
single-model mode, three in a folder for the router mode).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0}


@dataclass
class Req:
    name: str
    method: str
    path: str
    body: object | None = None
    headers: dict = field(default_factory=dict)
    raw: str | None = None  # a body sent as is (not JSON)


def single_corpus() -> list[Req]:
    conv = {"X-Conversation-Id": "conv-1"}
    return [
        Req("health", "GET", "/health"),
        Req("props", "GET", "/props"),
        Req("models", "GET", "/models"),
        Req("v1 models", "GET", "/v1/models"),
        Req("slots", "GET", "/slots"),
        Req("metrics off", "GET", "/metrics"),
        Req("completion", "POST", "/completion", {"prompt": "once upon", "n_predict": 8, "temperature": 0}),
        Req("completion stream", "POST", "/completion",
            {"prompt": "once upon", "n_predict": 8, "temperature": 0, "stream": True}),
        Req("oai completion", "POST", "/v1/completions", {"prompt": "once upon", "max_tokens": 8, "temperature": 0}),
        Req("chat", "POST", "/v1/chat/completions", CHAT),
        Req("chat stream", "POST", "/v1/chat/completions", {**CHAT, "stream": True}),
        Req("chat stream usage", "POST", "/v1/chat/completions",
            {**CHAT, "stream": True, "stream_options": {"include_usage": True}}),
        Req("chat logprobs", "POST", "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 2}),
        Req("chat n=2", "POST", "/v1/chat/completions", {**CHAT, "n": 2}),
        Req("chat json schema", "POST", "/v1/chat/completions",
            {**CHAT, "response_format": {"type": "json_object"}}),
        Req("responses", "POST", "/v1/responses", {"input": "hello", "max_output_tokens": 8}),
        Req("anthropic messages", "POST", "/v1/messages",
            {"model": "x", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}),
        Req("count tokens", "POST", "/v1/messages/count_tokens",
            {"model": "x", "messages": [{"role": "user", "content": "hello"}]}),
        Req("input tokens", "POST", "/v1/chat/completions/input_tokens", CHAT),
        Req("infill", "POST", "/infill", {"input_prefix": "def f(", "input_suffix": "):", "n_predict": 4}),
        Req("tokenize", "POST", "/tokenize", {"content": "hello world", "with_pieces": True}),
        Req("detokenize", "POST", "/detokenize", {"tokens": [10, 20, 30]}),
        Req("apply template", "POST", "/apply-template", CHAT),
        Req("embeddings off", "POST", "/v1/embeddings", {"input": "hello"}),
        Req("rerank off", "POST", "/v1/rerank", {"query": "a", "documents": ["b"]}),
        Req("lora adapters", "GET", "/lora-adapters"),
        Req("cors proxy off", "GET", "/cors-proxy?url=http://127.0.0.1:1/"),
        Req("tools off", "GET", "/tools"),
        Req("unknown route", "GET", "/no/such/route"),
        Req("invalid json", "POST", "/v1/chat/completions", raw="{not json"),
        Req("no messages", "POST", "/v1/chat/completions", {"max_tokens": 4}),
        Req("bad role", "POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}),
        Req("prompt too long", "POST", "/completion", {"prompt": "word " * 2000, "n_predict": 1}),
        Req("bad grammar", "POST", "/completion", {"prompt": "x", "n_predict": 2, "grammar": "root ::= ("}),
        Req("negative n_predict", "POST", "/completion", {"prompt": "x", "n_predict": -5, "temperature": 0}),
        # resumable streams
        Req("conversation stream", "POST", "/v1/chat/completions", {**CHAT, "stream": True}, conv),
        Req("stream replay", "GET", "/v1/stream?conv_id=conv-1&from=0"),
        Req("stream replay offset", "GET", "/v1/stream?conv_id=conv-1&from=20"),
        Req("stream lookup", "POST", "/v1/streams/lookup", {"conversation_ids": ["conv-1", "other"]}),
        Req("stream lookup bad body", "POST", "/v1/streams/lookup", raw="{"),
        Req("stream bad offset", "GET", "/v1/stream?conv_id=conv-1&from=x"),
        Req("stream no id", "GET", "/v1/stream"),
        Req("stream delete", "DELETE", "/v1/stream?conv_id=conv-1"),
        Req("stream after delete", "GET", "/v1/stream?conv_id=conv-1&from=0"),
        Req("stream delete unknown", "DELETE", "/v1/stream?conv_id=never"),
    ]


def router_corpus() -> list[Req]:
    conv = {"X-Conversation-Id": "conv-r::model-a"}
    return [
        Req("router health", "GET", "/health"),
        Req("router props", "GET", "/props"),
        Req("router models", "GET", "/models"),
        Req("router v1 models", "GET", "/v1/models"),
        Req("router load", "POST", "/models/load", {"model": "model-a"}),
        Req("router load unknown", "POST", "/models/load", {"model": "nope"}),
        Req("router chat", "POST", "/v1/chat/completions", {**CHAT, "model": "model-a"}),
        Req("router chat stream", "POST", "/v1/chat/completions", {**CHAT, "model": "model-a", "stream": True}),
        Req("router chat no model", "POST", "/v1/chat/completions", CHAT),
        Req("router chat unknown model", "POST", "/v1/chat/completions", {**CHAT, "model": "nope"}),
        Req("router model props", "GET", "/props?model=model-a"),
        Req("router tokenize", "POST", "/tokenize", {"model": "model-a", "content": "hello"}),
        Req("router conversation stream", "POST", "/v1/chat/completions",
            {**CHAT, "model": "model-a", "stream": True}, conv),
        Req("router stream replay", "GET", "/v1/stream?conv_id=conv-r%3A%3Amodel-a&from=0"),
        Req("router stream lookup", "POST", "/v1/streams/lookup", {"conversation_ids": ["conv-r"]}),
        Req("router stream lookup bad body", "POST", "/v1/streams/lookup", raw="{"),
        Req("router stream delete", "DELETE", "/v1/stream?conv_id=conv-r%3A%3Amodel-a"),
        Req("router stream after delete", "GET", "/v1/stream?conv_id=conv-r%3A%3Amodel-a&from=0"),
        Req("router unload", "POST", "/models/unload", {"model": "model-a"}),
        # llama-server unloads in the background (the child exits later): wait for it, on both sides
        Req("router wait unloaded", "WAIT", "model-a", "unloaded"),
        Req("router unload not loaded", "POST", "/models/unload", {"model": "model-b"}),
        Req("router no autoload", "POST", "/v1/chat/completions?autoload=false", {**CHAT, "model": "model-c"}),
        Req("router models after", "GET", "/models"),
    ]


# Differences that stay, by request name and where they show, with the reason. Each is
# deliberate and documented in the README's "Differences from llama-server".
EXPLAINED: dict[tuple[str, str], str] = {
    ("invalid json", "status: 500 upstream, 400"):
        "malformed JSON is the client's mistake: 400 (README: client mistakes answer 4xx where upstream answers 500)",
    **{(name, "data[0].llamaproc: only in llamaproc"):
       "one added key per model with llamaproc's own fields (memory, failures, pinned); nothing of llama-server's "
       "changes and clients ignore unknown keys"
       for name in ("router models", "router v1 models", "router models after")},
    ("router stream lookup", ": 0 kinds of items"):
        "asked for \"conv-r\", the session \"conv-r::model-a\" is listed, as a single llama-server (and each router "
        "child) matches \"<id>::<model>\"; llama-server's router resolves only exact ids before asking its children, "
        "which loses that match",
}


def shape(value: object) -> object:
    """The structure of a JSON value: keys and value types, not the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shapes = []
        for v in value:
            s = shape(v)
            if s not in shapes:
                shapes.append(s)
        return shapes
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "str"


def sse_shape(text: str) -> list:
    """The events of an SSE body as shapes, runs of equal shapes collapsed into one."""
    out: list = []
    for line in text.splitlines():
        if not line.startswith(("data:", "event:")):
            continue
        kind, _, payload = line.partition(":")
        payload = payload.strip()
        if kind == "event":
            s: object = f"event {payload}"
        elif payload == "[DONE]":
            s = "[DONE]"
        else:
            try:
                s = shape(json.loads(payload))
            except ValueError:
                s = "not json"
        if not out or out[-1] != s:
            out.append(s)
    return out


def wait_status(port: int, model: str, status: str, timeout: float = 30.0) -> dict:
    """A WAIT step: until GET /models shows ``model`` with ``status``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", "/models")
            listed = json.loads(conn.getresponse().read())["data"]
        finally:
            conn.close()
        if any(m["id"] == model and m["status"]["value"] == status for m in listed):
            return {"status": 200, "type": "", "shape": "reached"}
        time.sleep(0.05)
    return {"status": 0, "type": "", "shape": "not reached"}


def send(port: int, req: Req, timeout: float = 120.0) -> dict:
    if req.method == "WAIT":
        return wait_status(port, req.path, str(req.body))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = req.raw if req.raw is not None else (None if req.body is None else json.dumps(req.body))
        conn.request(req.method, req.path, body=body, headers={"Content-Type": "application/json", **req.headers})
        res = conn.getresponse()
        text = res.read().decode("utf-8", "replace")
    finally:
        conn.close()
    ctype = (res.getheader("Content-Type") or "").split(";")[0].strip()
    if ctype == "text/event-stream":
        body_shape: object = sse_shape(text)
    else:
        try:
            body_shape = shape(json.loads(text)) if text else "empty"
        except ValueError:
            body_shape = "text"
    return {"status": res.status, "type": ctype, "shape": body_shape}


def differences(a: object, b: object, where: str = "") -> list[str]:
    """Where two shapes differ: 'missing in llamaproc', 'only in llamaproc', 'type'."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            at = f"{where}.{k}" if where else k
            if k not in b:
                out.append(f"{at}: missing in llamaproc")
            elif k not in a:
                out.append(f"{at}: only in llamaproc")
            else:
                out += differences(a[k], b[k], at)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) == len(b):
            out = []
            for i, (x, y) in enumerate(zip(a, b)):
                out += differences(x, y, f"{where}[{i}]")
            return out
        return [f"{where}: {len(a)} kinds of items (or events) upstream, {len(b)} in llamaproc"]
    if a != b:
        return [f"{where or 'body'}: {json.dumps(a)[:80]} upstream, {json.dumps(b)[:80]} in llamaproc"]
    return []


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was healthy")
        try:
            if send(port, Req("", "GET", "/health"), timeout=2)["status"] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_side(command: list[str], corpus: list[Req], log: Path) -> dict[str, dict]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    with open(log, "w") as out:
        proc = subprocess.Popen([*command, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_healthy(port, proc)
            return {r.name: send(port, r) for r in corpus}
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dropin-diff.md")
    args = parser.parse_args()

    from upstream import build_upstream

    from llamaproc.testing import make_tiny_model

    upstream_bin = build_upstream() / "llama-server"
    work = Path(tempfile.mkdtemp(prefix="llamaproc-dropin-"))
    single = make_tiny_model(work / "tiny.gguf")
    folder = work / "models"
    for seed, name in enumerate(("model-a", "model-b", "model-c"), start=1):
        make_tiny_model(folder / f"{name}.gguf", seed=seed)
    ours = [sys.executable, "-m", "llamaproc", "serve"]
    modes = [
        ("single model", ["-m", str(single), "-c", "512", "-t", "1", "-np", "2"], single_corpus()),
        ("router", ["--models-dir", str(folder), "--models-max", "2", "-c", "256", "-t", "1"], router_corpus()),
    ]
    lines = ["# llama-server and `python -m llamaproc serve`, side by side", "",
             "Made by `python scripts/dropin_diff.py` (the same request corpus sent to upstream llama-server, built",
             "from the pinned source by `benchmarks/upstream.py`, and to llamaproc, started with the same flags).",
             "Compared: status, content type, JSON keys and value types, the sequence of SSE event shapes.", ""]
    unexplained = 0
    for mode, flags, corpus in modes:
        up = run_side([str(upstream_bin), *flags], corpus, work / f"upstream-{mode}.log")
        lp = run_side([*ours, *(["--router"] if mode == "router" else []), *flags], corpus, work / f"llamaproc-{mode}.log")
        lines += [f"## {mode}: `{' '.join(flags).replace(str(work), '$TMP')}`", "",
                  "| request | upstream | llamaproc | differences |", "|---|---|---|---|"]
        for r in corpus:
            a, b = up[r.name], lp[r.name]
            diffs = []
            if a["status"] != b["status"]:
                diffs.append(f"status: {a['status']} upstream, {b['status']} in llamaproc")
            if a["type"] != b["type"]:
                diffs.append(f"content type: {a['type']} upstream, {b['type']} in llamaproc")
            diffs += differences(a["shape"], b["shape"])
            notes = []
            for d in diffs:
                reason = next((why for (name, key), why in EXPLAINED.items() if name == r.name and d.startswith(key)), None)
                if reason is None:
                    unexplained += 1
                    notes.append(f"**{d}** (unexplained)")
                else:
                    notes.append(f"{d}: {reason}")
            lines.append(f"| {r.method} {r.path} ({r.name}) | {a['status']} | {b['status']} | "
                         f"{'; '.join(notes) if notes else 'same'} |")
        lines.append("")
    lines.append(f"Unexplained differences: {unexplained}.")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
