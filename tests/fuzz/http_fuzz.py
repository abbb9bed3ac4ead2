"""HTTP fuzzing: hostile requests against a running llamaproc server on the tiny model.

    python tests/fuzz/http_fuzz.py --requests 6000 --out /tmp/http-fuzz
    python tests/fuzz/http_fuzz.py --replay /tmp/http-fuzz/failures.jsonl

The server runs in a *child process* (`--serve`): a death there is counted, not fatal to the
harness, and the child's stderr is a file whose growth is measured (its `llamaproc` logger
writes to its own file, so every byte on stderr went around the logging bridge). Requests go
over raw sockets to 127.0.0.1 only, so that malformed HTTP can be sent too.

Categories (each run as a phase, so stderr bytes can be attributed to one):
``invalid_json``, ``wrong_type``, ``numbers``, ``huge``, ``utf8``, ``unknown_fields``,
``routes`` (every route with a valid body; GET on POST routes and vice versa), ``grammar``
(GBNF and JSON schema), ``sampler`` (extreme sampling parameters), ``disconnect`` (mid-request,
mid-stream, right after sending), ``slow`` (dripped bodies, slowly read streams),
``protocol`` (malformed HTTP), ``embed`` (the embedding and rerank routes, against a second
server started with ``embeddings=True``).

Measured: deaths of the server process, hangs (no answer within ``--timeout``), every 5xx
(classified by `classify_5xx()`: which C++ exception llama.cpp's handler let out), bytes on
stderr, and whether the server still answers correctly afterwards (a deterministic
completion and a tokenization compared with the answers before the run, /health, slots free).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------------------------
# what a 5xx was


_CLASSES = [
    # nlohmann::json exceptions: their what() starts with "[json.exception.<kind>.<id>]"
    (re.compile(r"\[json\.exception\.parse_error\.(\d+)\]"), "nlohmann::json::parse_error"),
    (re.compile(r"\[json\.exception\.type_error\.(\d+)\]"), "nlohmann::json::type_error"),
    (re.compile(r"\[json\.exception\.out_of_range\.(\d+)\]"), "nlohmann::json::out_of_range"),
    (re.compile(r"\[json\.exception\.invalid_iterator\.(\d+)\]"), "nlohmann::json::invalid_iterator"),
    (re.compile(r"\[json\.exception\.other_error\.(\d+)\]"), "nlohmann::json::other_error"),
    (re.compile(r"failed assertion"), "ggml assertion (NativeAbort)"),
    (re.compile(r"^(vector|map|basic_string|unordered_map)::|_M_range_check|out of range", re.I), "std::out_of_range"),
    (re.compile(r"stoi|stol|stoul|stof|stod|stoll"), "std::invalid_argument/out_of_range from std::sto*"),
    (re.compile(r"regex", re.I), "std::regex_error"),
    (re.compile(r"bad_alloc|std::length_error|cannot create std::vector larger", re.I), "std::bad_alloc/length_error"),
    (re.compile(r"json_schema|JSON schema|schema", re.I), "std::runtime_error (JSON schema conversion)"),
    (re.compile(r"grammar", re.I), "std::runtime_error (grammar)"),
    (re.compile(r"lora", re.I), "std::runtime_error (lora field)"),
    (re.compile(r"dry_sequence_breakers", re.I), "std::runtime_error (dry_sequence_breakers)"),
    (re.compile(r"chat template|jinja|template", re.I), "std::runtime_error (chat template)"),
    (re.compile(r"Unsupported|unsupported|not supported|Expected|expected|must be|Invalid|invalid|missing|Missing"),
     "std::runtime_error (request validation)"),
]


def classify_5xx(status: int, body: bytes | str) -> str:
    """Which kind of failure a 5xx answer reports, from its body.

    llamaproc's `call_route()` answers 500 for any `std::exception` a handler lets out other
    than `std::invalid_argument`, with the exception's `what()` as the message; the message
    names the C++ exception type well enough to map it to 400 where it is the client's
    mistake (nlohmann's parse_error/type_error/out_of_range, runtime_errors thrown while
    reading request fields). 501 and 503 are reported as what they are.
    """
    if status == 501:
        return "501 not supported (feature off)"
    if status == 503:
        return "503 unavailable"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text
    for pattern, name in _CLASSES:
        m = pattern.search(message)
        if m:
            return name + (f" {m.group(1)}" if m.groups() else "")
    return "other: " + message[:60]


# ----------------------------------------------------------------------------------------------
# the server child


def _serve_main(args: argparse.Namespace) -> None:
    import logging

    log = logging.getLogger("llamaproc")
    handler = logging.FileHandler(args.log_file, encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    from llamaproc import LlamaServer, ServerConfig
    from llamaproc.testing import make_tiny_model

    model = make_tiny_model(Path(args.workdir) / "tiny.gguf")
    extra: tuple[str, ...] = ("--metrics", "--props", "--slot-save-path", str(Path(args.workdir) / "slots"))
    if args.embeddings:  # a generative model's own pooling is "none", which /v1/embeddings refuses
        extra += ("--pooling", "mean")
    (Path(args.workdir) / "slots").mkdir(exist_ok=True)
    cfg = ServerConfig(model_path=model, context_size=512, threads=1, parallel=2, embeddings=args.embeddings,
                       extra_args=extra)
    server = LlamaServer.start(cfg)
    print(json.dumps({"port": server.port, "pid": os.getpid()}), flush=True)
    try:
        for line in sys.stdin:  # commands from the parent, one per line
            cmd = line.strip()
            if cmd == "status":
                m = server.metrics()
                print(json.dumps({"status": server.status.value, "slots_busy": server.health_check().slots_busy,
                                  "requests": m.requests if hasattr(m, "requests") else None}), flush=True)
            elif cmd == "stop":
                break
    finally:
        t0 = time.monotonic()
        server.stop()
        print(json.dumps({"stopped_s": round(time.monotonic() - t0, 3)}), flush=True)


class ServerChild:
    def __init__(self, workdir: Path, name: str, embeddings: bool = False, mem_limit_gb: float = 8.0) -> None:
        self.workdir, self.name, self.embeddings, self.mem_limit_gb = workdir, name, embeddings, mem_limit_gb
        self.stderr_path = workdir / f"server-{name}.stderr"
        self.log_path = workdir / f"server-{name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.starts = 0
        self.generation = 0  # bumped by every (re)start
        self.restart_lock = threading.Lock()

    def start(self) -> None:
        self.stderr = open(self.stderr_path, "ab")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--workdir", str(self.workdir),
               "--log-file", str(self.log_path)] + (["--embeddings"] if self.embeddings else [])
        limit = int(self.mem_limit_gb * 2**30)

        def limit_memory() -> None:  # a request that allocates without bound fails here, not in the OOM killer
            import resource

            if limit > 0:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, start_new_session=True, preexec_fn=limit_memory)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"server child did not start; see {self.stderr_path}")
        self.port = json.loads(line)["port"]
        self.starts += 1
        self.generation += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, cmd: str, timeout: float = 30) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(timeout)
        if not result or not result[0]:
            return {"error": "no answer"}
        return json.loads(result[0])

    def stop(self, timeout: float = 60) -> float | None:
        """Stops the server; returns how long stop() took in the child (None if it did not)."""
        if not self.alive():
            return None
        answer = self.command("stop", timeout)
        try:
            self.proc.wait(timeout=10 if "stopped_s" in answer else 0.1)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            self.kill()
        self.close_pipes()
        return answer.get("stopped_s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout) if self.proc is not None else ():
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        if not self.stderr.closed:
            self.stderr.close()

    def rss_bytes(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:  # type: ignore[union-attr]
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, AttributeError):
            pass
        return 0

    def stderr_bytes(self) -> int:
        return self.stderr_path.stat().st_size if self.stderr_path.exists() else 0


# ----------------------------------------------------------------------------------------------
# raw HTTP


def _request(method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None,
             content_length: int | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    for k, v in hdrs.items():
        head += f"{k}: {v}\r\n"
    if body is not None:
        head += f"Content-Length: {len(body) if content_length is None else content_length}\r\n"
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def _read_response(sock: socket.socket, deadline: float, *, stop_after_first_event: bool = False,
                   slow_read: float = 0.0) -> tuple[int | None, bytes, str]:
    """(status, body, how it ended: 'complete'|'closed'|'timeout'|'reset'|'closed_by_client')."""
    buf = bytearray()
    status: int | None = None
    body_start = -1
    length: int | None = None
    chunked = False

    def body() -> bytes:
        return bytes(buf[body_start:] if body_start >= 0 else buf)

    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return status, body(), "timeout"
        sock.settimeout(min(left, 1.0))
        try:
            chunk = sock.recv(64 if slow_read else 1 << 20)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return status, body(), "reset"
        if slow_read:
            time.sleep(slow_read)
        if not chunk:
            return status, body(), "closed"
        buf += chunk
        while body_start < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
            status = int(m.group(1)) if m else -1
            if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
                del buf[:end + 4]
                status = None
                continue
            headers = bytes(buf[:end]).lower()
            body_start = end + 4
            m = re.search(rb"content-length: *(\d+)", headers)
            length = int(m.group(1)) if m else None
            chunked = b"transfer-encoding: chunked" in headers
        if body_start >= 0:
            if stop_after_first_event and b"data:" in buf[body_start:]:
                return status, body(), "closed_by_client"
            if length is not None and len(buf) - body_start >= length:
                return status, bytes(buf[body_start:body_start + length]), "complete"
            if chunked and buf.endswith(b"0\r\n\r\n"):
                return status, body(), "complete"


def exchange(port: int, case: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one case and read what comes back."""
    mode = case.get("mode", "normal")
    body = case["body"].encode("latin-1") if isinstance(case.get("body"), str) else None
    if "raw" in case:
        data = case["raw"].encode("latin-1")
    else:
        data = _request(case["method"], case["path"], body, case.get("headers"), case.get("content_length"))
    started = time.monotonic()
    deadline = started + timeout
    out: dict[str, Any] = {"status": None, "end": "", "seconds": 0.0}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            if mode == "partial_close":  # part of the request, then gone
                sock.sendall(data[: case["cut"]])
                time.sleep(case.get("pause", 0.0))
                out["end"] = "client_left"
            elif mode == "send_close":  # all of it, then gone before the answer
                sock.sendall(data)
                out["end"] = "client_left"
            elif mode == "slow_send":
                step, pause = case["step"], case["pause"]
                for i in range(0, len(data), step):
                    sock.sendall(data[i:i + step])
                    time.sleep(pause)
                out["status"], resp, out["end"] = _read_response(sock, deadline)
                out["body"] = resp[:2000]
            else:
                sock.sendall(data)
                if mode == "stream_close":  # read the first event, then gone
                    out["status"], resp, out["end"] = _read_response(sock, deadline, stop_after_first_event=True)
                elif mode == "slow_read":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    out["status"], resp, out["end"] = _read_response(sock, min(deadline, started + case["read_s"]),
                                                                     slow_read=0.01)
                    if out["end"] == "timeout":
                        out["end"] = "client_left"
                else:
                    out["status"], resp, out["end"] = _read_response(sock, deadline)
                out["body"] = resp[:4000]
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, socket.timeout, OSError) as e:
        out["end"] = f"error:{type(e).__name__}"
    if "raw" in case and out["end"] == "timeout" and out["status"] is None:
        # malformed HTTP the server is still reading (it waits up to its read timeout, an hour by
        # default): not a hang of the server, but a connection (and a thread) it holds
        out["end"] = "held_open"
    out["seconds"] = round(time.monotonic() - started, 3)
    return out


# ----------------------------------------------------------------------------------------------
# cases

MSGS = [{"role": "user", "content": "hello"}]
VALID: dict[str, tuple[str, dict[str, Any] | list[Any] | None]] = {
    # path: (method, body)
    "/health": ("GET", None), "/v1/health": ("GET", None), "/metrics": ("GET", None), "/props": ("GET", None),
    "/models": ("GET", None), "/v1/models": ("GET", None), "/lora-adapters": ("GET", None), "/slots": ("GET", None),
    "/v1/stream": ("GET", None), "/tools": ("GET", None), "/cors-proxy": ("GET", None),
    "/completion": ("POST", {"prompt": "hello", "n_predict": 4}),
    "/completions": ("POST", {"prompt": "hello", "n_predict": 4}),
    "/v1/completions": ("POST", {"prompt": "hello", "max_tokens": 4}),
    "/chat/completions": ("POST", {"messages": MSGS, "max_tokens": 4}),
    "/v1/chat/completions": ("POST", {"messages": MSGS, "max_tokens": 4}),
    "/v1/chat/completions/control": ("POST", {"id": "chatcmpl-x", "action": "reasoning_end"}),
    "/v1/responses": ("POST", {"input": "hello", "max_output_tokens": 4}),
    "/responses": ("POST", {"input": "hello", "max_output_tokens": 4}),
    "/v1/audio/transcriptions": ("POST", {"file": "x"}),
    "/v1/messages": ("POST", {"model": "m", "max_tokens": 4, "messages": MSGS}),
    "/infill": ("POST", {"input_prefix": "def f(", "input_suffix": ")", "n_predict": 4}),
    "/tokenize": ("POST", {"content": "hello world", "with_pieces": True}),
    "/detokenize": ("POST", {"tokens": [300, 301, 302]}),
    "/apply-template": ("POST", {"messages": MSGS}),
    "/chat/completions/input_tokens": ("POST", {"messages": MSGS}),
    "/v1/chat/completions/input_tokens": ("POST", {"messages": MSGS}),
    "/responses/input_tokens": ("POST", {"input": "hello"}),
    "/v1/responses/input_tokens": ("POST", {"input": "hello"}),
    "/v1/messages/count_tokens": ("POST", {"model": "m", "messages": MSGS}),
    "/lora-adapters": ("POST", []),
    "/slots/0?action=erase": ("POST", {}),
    "/slots/0?action=save": ("POST", {"filename": "slot0.bin"}),
    "/slots/0?action=restore": ("POST", {"filename": "slot0.bin"}),
    "/props": ("POST", {}),
    "/v1/streams/lookup": ("POST", {"conversation_ids": ["x"]}),
    "/tools": ("POST", {}),
}
EMBED_VALID = {
    "/embedding": ("POST", {"content": "hello"}), "/embeddings": ("POST", {"content": "hello"}),
    "/v1/embeddings": ("POST", {"input": "hello"}),
    "/rerank": ("POST", {"query": "a", "documents": ["b", "c"]}), "/reranking": ("POST", {"query": "a", "documents": ["b"]}),
    "/v1/rerank": ("POST", {"query": "a", "documents": ["b"]}), "/v1/reranking": ("POST", {"query": "a", "documents": ["b"]}),
}
GENERATING = ["/completion", "/completions", "/v1/completions", "/chat/completions", "/v1/chat/completions",
              "/v1/responses", "/v1/messages", "/infill"]
POST_ROUTES = [p for p, (m, _) in VALID.items() if m == "POST"]
GETS = [p for p, (m, _) in VALID.items() if m == "GET"] + ["/props", "/lora-adapters", "/tools"]

INVALID_JSON = [
    "", " ", "{", "}", "[", "]", "{]", "[}", "{\"prompt\": }", "{\"prompt\": \"x\"", "{\"prompt\": \"x\",}",
    "{'prompt': 'x'}", "{prompt: 1}", "null", "true", "0", "-", "1e999", "NaN", "Infinity", "\"just a string\"",
    "{\"a\":1}{\"b\":2}", "{\"a\":1} trailing", "\ufeff{\"prompt\":\"x\"}".encode().decode("latin-1"), "{\"a\":\"\\x41\"}",
    "{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\\ud800\"}", "{\"a\" \"b\"}", "{,}", "[1,,2]",
    "{\"a\":01}", "{\"a\":+1}", "{\"a\":.5}", "{\"a\":1.}", "{\"a\":0x10}", "{\"a\":tru}", "{\"a\":nul}",
    "/* c */ {}", "{\"a\":1 // c\n}", "{\"a\":\"tab\tin string\"}", "{\"a\":\"nl\nin string\"}", "\x00",
    "{\"a\":\"\x00\"}", "[" * 10000 + "]" * 10000, "[" * 100000, "{\"a\":" * 5000 + "1" + "}" * 5000,
    "{\"a\":" + "1" * 100000 + "}", "{\"a\":1e" + "9" * 1000 + "}", "{\"a\":-1e-99999}", "{\"a\":\"" + "\\\\" * 5000 + "\"}",
    "\xff\xfe{\x00\"\x00a\x00\"\x00:\x001\x00}\x00", "{\"a\":\"\xc3\x28\"}",
]
WRONG = [None, True, False, 0, 1, -1, 1.5, -0.5, "", "x", "1", [], [1], ["a"], {}, {"a": 1}, [[]], [None],
         1e300, -1e300, 2**63, -(2**63) - 1, 2**64, 10**30, 1e-300, "\u0000", "🙂" * 3, [{}] * 3]
NUMBERS = [0, -1, -2, 1, 2**31 - 1, 2**31, -(2**31), 2**32, 2**53, 2**63 - 1, 2**63, -(2**63), 2**64, 10**40,
           -(10**40), 1e308, -1e308, 1e-320, 0.5, -0.0, 3.7]
FIELDS_NUM = ["n_predict", "max_tokens", "max_completion_tokens", "max_output_tokens", "temperature", "top_k", "top_p",
              "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
              "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n", "mirostat", "mirostat_tau",
              "mirostat_eta", "seed", "n_probs", "min_keep", "n_keep", "n_discard", "t_max_predict_ms",
              "t_max_prompt_ms", "n_indent", "id_slot", "top_n_sigma", "xtc_probability", "xtc_threshold",
              "dynatemp_range", "dynatemp_exponent", "n_cmpl", "n", "n_cache_reuse", "logprobs", "top_logprobs",
              "reasoning_budget_tokens", "thinking_budget_tokens", "sse_ping_interval", "adaptive_target",
              "adaptive_decay", "top_n", "embd_normalize"]
FIELDS_OTHER = ["prompt", "messages", "stop", "stream", "grammar", "json_schema", "response_format", "logit_bias",
                "samplers", "tokens", "content", "input", "lora", "tools", "tool_choice", "chat_template_kwargs",
                "stream_options", "dry_sequence_breakers", "ignore_eos", "cache_prompt", "return_tokens",
                "post_sampling_probs", "timings_per_token", "with_pieces", "add_special", "parse_special",
                "input_prefix", "input_suffix", "input_extra", "documents", "query", "model", "system",
                "reasoning_format", "parallel_tool_calls", "add_generation_prompt", "continue_final_message",
                "grammar_lazy", "grammar_triggers", "preserved_tokens", "response_fields", "instructions",
                "image_data", "multimodal_data", "echo", "reasoning_budget_message", "chat_format", "id", "action",
                "filename", "encoding_format", "return_text", "conversation_ids", "return_progress", "verbose"]
GRAMMARS = [
    "", "root ::=", "root ::= ", "root ::= \"a\"", "root ::= root", "root ::= root \"a\"", "root ::= \"a\" root",
    "root ::= x", "root ::= [", "root ::= [a-", "root ::= [z-a]", "root ::= \"", "root ::= \"\\", "root ::= (",
    "root ::= )", "root ::= \"a\"{1000000}", "root ::= \"a\"{2,1}", "root ::= \"a\"{-1}", "root ::= \"a\"*{3}",
    "root ::= \"\\x\"", "root ::= \"\\u12\"", "root ::= [\\U0010FFFF-\\U00110000]", "root ::= <[999999]>",
    "root ::= <[-1]>", "root ::= <|im_end|>", "root ::= !<|im_end|>", "::= \"a\"", "root \"a\"",
    "root ::= \"a\" | | \"b\"", "a ::= \"a\"", "root ::= a\na ::= b\nb ::= a", "root ::= (((((((((((\"a\")))))))))))",
    "root ::= " + "(" * 2000 + "\"a\"" + ")" * 2000, "root ::= " + " | ".join(f"\"{i}\"" for i in range(3000)),
    "root ::= \"\xff\"", "root ::= [\x00-\x10]", "root ::= .*", "root ::= [^]", "root ::= \"a\"?*+",
    "root ::= #comment", "\x00", "root ::= \"a\"\nroot ::= \"b\"", "root ::= " + "x" * 10000,
]
SCHEMAS: list[Any] = [
    {}, [], "x", 1, None, {"type": "nope"}, {"type": ["string", "nope"]}, {"$ref": "#/defs/missing"},
    {"$ref": "#"}, {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$ref": "http://example.com/schema"}, {"$ref": "#/properties/0/../../.."},
    {"type": "array", "minItems": 1000000}, {"type": "array", "maxItems": -1}, {"type": "array", "minItems": 5, "maxItems": 2},
    {"type": "string", "minLength": 10**9}, {"type": "string", "maxLength": -5}, {"type": "string", "pattern": "("},
    {"type": "string", "pattern": "(a+)+$"}, {"type": "string", "pattern": "[z-a]"}, {"type": "string", "pattern": "a{99999}"},
    {"type": "string", "pattern": "^\\p{L}$"}, {"type": "string", "pattern": "(?<=a)b"}, {"type": "string", "pattern": "\\"},
    {"type": "string", "format": "date-time"}, {"type": "string", "format": "nope"}, {"enum": []}, {"enum": [{"a": [1, {}]}]},
    {"const": None}, {"anyOf": []}, {"oneOf": [{"type": "nope"}]}, {"allOf": [{"type": "string"}, {"type": "number"}]},
    {"type": "integer", "minimum": 10, "maximum": 1}, {"type": "integer", "minimum": 1e308}, {"type": "number", "multipleOf": 0},
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
    {"type": "object", "properties": {str(i): {"type": "integer"} for i in range(500)}, "required": [str(i) for i in range(500)]},
    {"type": "object", "additionalProperties": {"$ref": "#"}}, {"type": "object", "patternProperties": {"(": {}}},
    {"items": [{"type": "string"}] * 50, "type": "array"}, {"prefixItems": "x"}, {"properties": []},
    {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {"$ref": "#"}}}}},
    {"not": {}}, {"if": {}, "then": {}, "else": {}}, {"type": "string", "minLength": 3, "maxLength": 2000000},
]
SAMPLER = {
    "temperature": [-1, 0, 1e-30, 1e30, -1e30], "top_k": [-1, 0, 1, 10**9, -(10**9)], "top_p": [-1, 0, 1e-9, 2, 1e30],
    "min_p": [-1, 1, 2], "typical_p": [0, -1, 2, 1e-30], "repeat_penalty": [0, -1, 1e30, 1e-30],
    "repeat_last_n": [-2, -1, 0, 10**9], "presence_penalty": [-1e30, 1e30], "frequency_penalty": [1e30, -1e30],
    "mirostat": [1, 2, 3, -1, 100], "mirostat_tau": [0, -1, 1e30], "mirostat_eta": [0, -1, 1e30],
    "dynatemp_range": [-1, 1e30], "dynatemp_exponent": [0, -1, 1e30], "xtc_probability": [-1, 1, 2],
    "xtc_threshold": [-1, 0, 1], "dry_multiplier": [1e30, -1], "dry_base": [0, 1e30, -1], "dry_allowed_length": [-1, 10**9],
    "dry_penalty_last_n": [-2, -1, 10**9], "n_probs": [0, 1, 511, 512, 513, 10**6, -1], "min_keep": [10**9, -1],
    "seed": [-1, 2**32, 2**64 - 1], "n_predict": [-2, -1, 0, 10**9], "n_keep": [-1, 10**9], "n_discard": [-1, 10**9],
    "t_max_predict_ms": [1, -1], "top_n_sigma": [-1, 0, 1e30], "n_cmpl": [0, -1, 100, 10**6], "n_indent": [10**9, -1],
    "samplers": [["zzz"], [], "edskypmxt", "zzz", ["top_k"] * 100, [1, 2]],
    "logit_bias": [{"1": -1e30}, [[1, False]], [[10**9, 1]], [[-1, 1]], {"999999": 1}, [["hello", -100]], [[1]], [1, 2],
                   {str(i): 0.5 for i in range(600)}],
    "dry_sequence_breakers": [[], [""], ["\n"] * 1000, "x", [1]], "stop": [[""], [""] * 100, ["a" * 10000], [None]],
    "grammar_lazy": [True], "grammar_triggers": [[{"type": 99, "value": "x"}], [{"value": "x"}], "x"],
    "preserved_tokens": [["<nope>"], [1]], "id_slot": [-1, 2, 10**9], "lora": [[{"id": 0, "scale": 1}], [{"id": -1}], "x"],
    "return_tokens": [True], "post_sampling_probs": [True], "n_cache_reuse": [-1, 10**9], "cache_prompt": [False],
}


def _json(obj: Any) -> str:
    return json.dumps(obj).encode("utf-8").decode("latin-1")


def generate(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """About `n` cases over every category (each category has a share; the shares scale with `n`)."""
    rng = random.Random(seed)
    cases: list[dict[str, Any]] = []

    def add(cat: str, intent: str, method: str, path: str, body: Any = None, **kw: Any) -> None:
        c = {"cat": cat, "intent": intent, "method": method, "path": path}
        if body is not None:
            c["body"] = body if isinstance(body, str) else _json(body)
        c.update(kw)
        cases.append(c)

    posts = POST_ROUTES
    # invalid JSON: every malformed body on every POST route
    for path in posts:
        for bad in INVALID_JSON:
            add("invalid_json", "client_error", "POST", path, bad)
    # wrong types: each field of a route (its own and the sampling ones) set to every wrong value
    for path in posts:
        method, base = VALID[path]
        if not isinstance(base, dict):
            for w in WRONG:
                add("wrong_type", "either", "POST", path, w if not isinstance(w, str) else [w])
            continue
        own = list(base.keys())
        fields = own + (rng.sample(FIELDS_NUM + FIELDS_OTHER, 12) if path in GENERATING else rng.sample(FIELDS_OTHER, 4))
        for f in fields:
            for w in rng.sample(WRONG, 10 if f in own else 5):
                body = dict(base)
                body[f] = w
                add("wrong_type", "either", "POST", path, body)
        # message shapes
        if "messages" in base:
            for msgs in ([], [{}], [{"role": "user"}], [{"content": "x"}], [{"role": "nope", "content": "x"}],
                         [{"role": "user", "content": None}], [{"role": "user", "content": [{"type": "nope"}]}],
                         [{"role": "user", "content": [{"type": "text"}]}], [{"role": "user", "content": [{"type": "text", "text": 1}]}],
                         [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
                         [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "!!", "format": "wav"}}]}],
                         [{"role": "assistant", "content": "x", "tool_calls": [{"function": {"name": 1}}]}],
                         [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{bad"}}]}],
                         [{"role": "tool", "content": "x"}], [{"role": "system", "content": "x"}] * 3,
                         [{"role": "user", "content": "x", "extra": {"deep": [1, 2, {}]}}], "x", {"role": "user"}):
                body = dict(base)
                body["messages"] = msgs
                add("wrong_type", "either", "POST", path, body)
    # numbers: every numeric field of the generating routes with every hostile number
    for path in GENERATING[:5] + ["/tokenize", "/detokenize", "/infill"]:
        base = VALID[path][1]
        for f in rng.sample(FIELDS_NUM, 14):
            for num in rng.sample(NUMBERS, 8):
                body = dict(base)  # type: ignore[arg-type]
                body[f] = num
                add("numbers", "either", "POST", path, body)
        body = dict(base)  # type: ignore[arg-type]
        for tok in ([10**9], [-1], [2**31], [0] * 600, [511, 512], [[1, 2]], [1.5], ["a", 1]):
            if path in ("/completion", "/completions", "/v1/completions", "/infill"):
                add("numbers", "either", "POST", path, dict(body, prompt=tok))
        if path == "/detokenize":
            for tok in ([10**9], [-1], [-(2**31)], [2**31], [512], [511, 512, 513], [1.5], [[1]], [None], list(range(-5, 600))):
                add("numbers", "either", "POST", path, {"tokens": tok})
        if path == "/tokenize":
            add("numbers", "either", "POST", path, {"content": [10**9, -1, "x"]})
    # huge strings and arrays
    for path in ["/completion", "/v1/chat/completions", "/tokenize", "/apply-template", "/v1/completions", "/infill",
                 "/v1/messages", "/v1/responses", "/detokenize"]:
        base = VALID[path][1]
        for size in (10_000, 200_000, 2_000_000):
            body = dict(base)  # type: ignore[arg-type]
            key = {"/tokenize": "content", "/infill": "input_prefix", "/detokenize": "tokens",
                   "/v1/responses": "input"}.get(path, "prompt" if "prompt" in base else "messages")  # type: ignore[operator]
            if key == "messages":
                body[key] = [{"role": "user", "content": "word " * (size // 5)}]
            elif key == "tokens":
                body[key] = [rng.randrange(512) for _ in range(size // 8)]
            else:
                body[key] = "word " * (size // 5)
            add("huge", "either", "POST", path, body)
        if path in ("/completion", "/v1/chat/completions"):
            for extra in ({"stop": ["x"] * 20000}, {"logit_bias": [[i % 512, 0.1] for i in range(100000)]},
                          {"messages": MSGS * 5000}, {"samplers": ["top_k"] * 10000},
                          {"tools": [{"type": "function", "function": {"name": f"f{i}", "parameters": {}}} for i in range(2000)]},
                          {"n_probs": 512, "n_predict": 2}, {"grammar": "root ::= " + "\"a\" " * 50000}):
                add("huge", "either", "POST", path, dict(base, **extra))  # type: ignore[arg-type]
    for depth in (100, 1000, 20000):
        add("huge", "client_error", "POST", "/completion", "{\"prompt\":\"x\",\"deep\":" + "[" * depth + "]" * depth + "}")
    add("huge", "client_error", "POST", "/completion", _json({"prompt": "x", **{f"k{i}": i for i in range(50000)}}))
    # invalid UTF-8 inside strings, on routes that read text
    bad_utf8 = ["\xff", "\xc3\x28", "\xe2\x82", "\xf0\x28\x8c\xbc", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80",
                "ok\xffok", "\\ud800", "\\udfff\\ud800", "\\u0000", "\x7f\x80"]
    for path in ["/completion", "/tokenize", "/v1/chat/completions", "/apply-template", "/infill", "/v1/completions",
                 "/v1/messages", "/v1/responses", "/completion?x=\xff"]:
        base_path = path.split("?")[0]
        for b in bad_utf8:
            method, base = VALID[base_path]
            key = {"/tokenize": "content", "/infill": "input_prefix", "/v1/responses": "input"}.get(
                base_path, "prompt" if "prompt" in base else "messages")  # type: ignore[operator]
            if key == "messages":
                body = _json(dict(base, messages=[{"role": "user", "content": "@@"}])).replace("@@", b)  # type: ignore[arg-type]
            else:
                body = _json(dict(base, **{key: "@@"})).replace("@@", b)  # type: ignore[arg-type]
            add("utf8", "either", "POST", path, body)
            add("utf8", "either", "POST", base_path, _json(dict(base, stop=["@@"])).replace("@@", b))  # type: ignore[arg-type]
        add("utf8", "either", "POST", base_path, _json(dict(VALID[base_path][1], **{"k\udcff".encode("utf-8", "surrogateescape").decode("latin-1"): 1})))  # type: ignore[arg-type]
    # unknown fields: must be ignored (a valid request stays valid)
    for path in posts:
        method, base = VALID[path]
        if isinstance(base, dict):
            for extra in ({"zzz": 1}, {"zzz": {"a": [1, 2, {"b": None}]}}, {"": ""}, {"__proto__": {}},
                          {"prompt_extra\u0000": 1}):
                add("unknown_fields", "either", "POST", path, dict(base, **extra))
    # every route, valid body; GET on POST routes and POST on GET routes; unknown routes
    # routes whose answer is "no" by design in this configuration: disabled features (/tools,
    # /cors-proxy), no conversation (/v1/stream), no audio or FIM model, no reranking
    by_design = {"/tools", "/cors-proxy", "/v1/stream", "/v1/audio/transcriptions", "/infill", "/lora-adapters",
                 "/slots/0?action=restore", "/v1/chat/completions/control"}
    for path, (method, base) in VALID.items():
        for _ in range(3):
            add("routes", "either" if path in by_design else "valid", method, path, base)
        if path not in GETS:  # /props, /lora-adapters and /tools take both
            add("routes", "client_error", "GET" if method == "POST" else "POST", path, None if method == "POST" else "{}")
    for path in GETS:
        add("routes", "either" if path in by_design else "valid", "GET", path)
    for path in ("/nope", "/v1/nope", "/completion/", "//completion", "/completion/../health", "/%2e%2e/health",
                 "/v1/chat/completions%00", "/" + "a" * 8000, "/slots/999?action=erase", "/slots/-1?action=erase",
                 "/slots/x?action=erase", "/slots/0?action=nope", "/slots/0", "/slots/99999999999999999999?action=erase",
                 "/slots/0?action=save", "/slots/0?action=restore", "/v1/stream?conversation_id=x",
                 "/v1/stream?conversation_id=" + "a" * 5000):
        add("routes", "client_error", "POST", path, "{}")
        add("routes", "client_error", "GET", path)
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "GETT", "get"):
        add("routes", "either", method, "/completion", "{}")
    add("routes", "either", "DELETE", "/v1/stream?conversation_id=x")
    # grammar and JSON schema
    for g in GRAMMARS:
        for path in ("/completion", "/v1/chat/completions"):
            add("grammar", "either", "POST", path, dict(VALID[path][1], grammar=g, n_predict=8, max_tokens=8))  # type: ignore[arg-type]
    for sch in SCHEMAS:
        add("grammar", "either", "POST", "/completion", dict(VALID["/completion"][1], json_schema=sch, n_predict=8))  # type: ignore[arg-type]
        add("grammar", "either", "POST", "/v1/chat/completions",
            dict(VALID["/v1/chat/completions"][1], response_format={"type": "json_schema", "json_schema": {"schema": sch}}))  # type: ignore[arg-type]
        add("grammar", "either", "POST", "/v1/chat/completions",
            dict(VALID["/v1/chat/completions"][1], response_format={"type": "json_object", "schema": sch}))  # type: ignore[arg-type]
        add("grammar", "either", "POST", "/v1/chat/completions",
            dict(VALID["/v1/chat/completions"][1], tools=[{"type": "function", "function": {"name": "f", "parameters": sch}}]))  # type: ignore[arg-type]
    for rf in ({"type": "nope"}, {"type": "json_schema"}, {"type": "json_schema", "json_schema": "x"}, "json", [], None,
               {"type": "text"}, {"type": "json_object"}):
        add("grammar", "either", "POST", "/v1/chat/completions", dict(VALID["/v1/chat/completions"][1], response_format=rf))  # type: ignore[arg-type]
    for tc in ("none", "auto", "required", "nope", {"type": "function", "function": {"name": "missing"}}, 1, []):
        add("grammar", "either", "POST", "/v1/chat/completions",
            dict(VALID["/v1/chat/completions"][1], tool_choice=tc, tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]))  # type: ignore[arg-type]
    # sampler extremes, alone and in random combinations
    for path in ("/completion", "/v1/chat/completions"):
        base = VALID[path][1]
        for f, values in SAMPLER.items():
            for v in values:
                add("sampler", "either", "POST", path, dict(base, **{f: v, "n_predict": 8}))  # type: ignore[arg-type]
        for _ in range(150):
            body = dict(base, n_predict=8)  # type: ignore[arg-type]
            for f in rng.sample(list(SAMPLER), 4):
                body[f] = rng.choice(SAMPLER[f])
            add("sampler", "either", "POST", path, body)
    # disconnects: mid-request, mid-stream, right after sending
    for i in range(120):
        path = rng.choice(GENERATING[:5])
        body = _json(dict(VALID[path][1], n_predict=64, max_tokens=64, stream=bool(i % 2)))  # type: ignore[arg-type]
        req_len = len(_request("POST", path, body.encode("latin-1")))
        mode = ("partial_close", "stream_close", "send_close")[i % 3]
        kw: dict[str, Any] = {"mode": mode}
        if mode == "partial_close":
            kw["cut"] = rng.randrange(1, req_len)
            kw["pause"] = rng.choice([0.0, 0.0, 0.2])
        if mode == "stream_close":
            body = _json(dict(VALID[path][1], n_predict=200, max_tokens=200, stream=True))  # type: ignore[arg-type]
        add("disconnect", "disconnect", "POST", path, body, **kw)
    for i in range(10):  # a body shorter than its Content-Length, the client still there
        add("disconnect", "client_error", "POST", "/completion", "{\"prompt\":\"x\"}", content_length=100, mode="partial_close",
            cut=10**9, pause=1.0)
    # slow clients
    for i in range(24):
        path = rng.choice(["/completion", "/v1/chat/completions", "/tokenize"])
        body = _json(dict(VALID[path][1], n_predict=16, max_tokens=16))  # type: ignore[arg-type]
        if i % 2:
            add("slow", "valid", "POST", path, body, mode="slow_send", step=rng.choice([1, 7, 64]), pause=0.02)
        else:
            body = _json(dict(VALID[path][1], n_predict=400, max_tokens=400, stream=True))  # type: ignore[arg-type]
            add("slow", "disconnect", "POST", path, body, mode="slow_read", read_s=rng.choice([0.5, 2.0]))
    # malformed HTTP
    raws = ["GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET /health\r\n\r\n", "GET /health HTTP/9.9\r\n\r\n", "\r\n\r\n",
            "GET /health HTTP/1.1\r\n\r\n", "GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
            "POST /completion HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            "POST /completion HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}\r\n0\r\n\r\n",
            "POST /completion HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "POST /completion HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n{\"prompt\":\"x\"}",
            "POST /completion HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 14\r\n\r\n{\"prompt\":\"x\"}",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 20\r\n\r\n--x\r\nbad\r\n--x--\r\n",
            "POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\nContent-Length: 3\r\n\r\n---",
            "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 60\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxx\r\n--b--\r\n",
            "GET /health HTTP/1.1\r\nHost: x\r\n" + "X-Big: " + "a" * 100_000 + "\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(2000)) + "\r\n",
            "GET /health?" + "a=1&" * 20000 + " HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + "x" * 10000 + "\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Conversation-Id: ../../etc\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: x\r\nOrigin: http://evil\r\nAccess-Control-Request-Method: POST\r\n\r\n",
            "OPTIONS /completion HTTP/1.1\r\nHost: x\r\nOrigin: http://evil\r\nAccess-Control-Request-Method: POST\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: x\r\nRange: bytes=99999999-\r\n\r\n",
            "GET /health HTTP/1.1\nHost: x\n\n", "GET /health HTTP/1.1\r\nHost: x\r\n\x00: \x00\r\n\r\n",
            "GET /he\xffalth HTTP/1.1\r\nHost: x\r\n\r\n", "GET http://127.0.0.1/health HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n", "POST /completion HTTP/1.0\r\nContent-Length: 14\r\n\r\n{\"prompt\":\"x\"}",
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "POST /completion HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 14\r\n\r\n{\"prompt\":\"x\"}POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{]"]
    for i, raw in enumerate(raws):
        for _ in range(3):
            add("protocol", "either", "RAW", f"raw#{i}", raw=raw)
    for _ in range(60):
        add("protocol", "either", "RAW", "random", raw="".join(chr(rng.randrange(256)) for _ in range(rng.randrange(1, 400))))
    for _ in range(60):  # a valid request with random bytes changed
        base = _request("POST", "/completion", _json({"prompt": "hello", "n_predict": 4}).encode("latin-1")).decode("latin-1")
        chars = list(base)
        for _ in range(rng.randrange(1, 6)):
            chars[rng.randrange(len(chars))] = chr(rng.randrange(256))
        add("protocol", "either", "RAW", "mutated", raw="".join(chars))
    # embedding and rerank routes (second server, embeddings=True)
    for path, (method, base) in EMBED_VALID.items():
        for _ in range(3):
            add("embed", "either" if "rerank" in path else "valid", method, path, base, server="embed")
        for bad in rng.sample(INVALID_JSON, 12):
            add("embed", "client_error", "POST", path, bad, server="embed")
        for f in list(base) + ["encoding_format", "embd_normalize", "top_n", "return_text", "input", "content", "texts"]:  # type: ignore[arg-type]
            for w in rng.sample(WRONG, 8):
                add("embed", "either", "POST", path, dict(base, **{f: w}), server="embed")  # type: ignore[arg-type]
        for v in ([], [""], [10**9], [[10**9]], [[]], ["x"] * 2000, "word " * 40000, [[1, 2], "x"], [-1], [1.5]):
            key = "input" if "input" in base else ("documents" if "documents" in base else "content")  # type: ignore[operator]
            add("embed", "either", "POST", path, dict(base, **{key: v}), server="embed")  # type: ignore[arg-type]
        for enc in ("base64", "float", "nope", 1):
            add("embed", "either", "POST", path, dict(base, encoding_format=enc), server="embed")  # type: ignore[arg-type]
    add("embed", "either", "POST", "/completion", VALID["/completion"][1], server="embed")
    add("embed", "either", "POST", "/v1/chat/completions", VALID["/v1/chat/completions"][1], server="embed")

    # scale to n: keep every category, resample proportionally
    if len(cases) > n:
        by_cat: dict[str, list[dict[str, Any]]] = {}
        for c in cases:
            by_cat.setdefault(c["cat"], []).append(c)
        scale = n / len(cases)
        cases = [c for cat in by_cat.values() for c in rng.sample(cat, max(1, round(len(cat) * scale)))]
    elif len(cases) < n:  # repeat random cases (new ids: the server sees them again, later)
        extra = [dict(rng.choice(cases)) for _ in range(n - len(cases))]
        cases += extra
    order = ["routes", "invalid_json", "wrong_type", "numbers", "huge", "utf8", "unknown_fields", "grammar", "sampler",
             "disconnect", "slow", "protocol", "embed"]
    cases.sort(key=lambda c: order.index(c["cat"]))
    for i, c in enumerate(cases):
        c["id"] = i
    return cases


# ----------------------------------------------------------------------------------------------
# run


PROBE_COMPLETION = {"prompt": "the quick brown fox", "n_predict": 12, "temperature": 0, "seed": 7, "cache_prompt": False}
PROBE_TOKENIZE = {"content": "hello world, again", "with_pieces": True}


def probe(port: int) -> dict[str, Any]:
    """What a correctly serving server answers (compared before and after the run)."""
    out: dict[str, Any] = {}
    for name, method, path, body in (("health", "GET", "/health", None),
                                     ("completion", "POST", "/completion", PROBE_COMPLETION),
                                     ("tokenize", "POST", "/tokenize", PROBE_TOKENIZE)):
        r = exchange(port, {"method": method, "path": path, "body": None if body is None else _json(body)}, 30)
        r.pop("seconds", None)
        out[name + "_status"] = r["status"]
        try:
            data = json.loads(r.get("body", b"") or b"null")
        except ValueError:
            data = None
        if name == "completion" and isinstance(data, dict):
            out["completion"] = data.get("content")
        if name == "tokenize" and isinstance(data, dict):
            out["tokenize"] = data.get("tokens")
    return out


def run(cases: list[dict[str, Any]], out: Path, *, clients: int, timeout: float, progress: bool = True,
        mem_limit_gb: float = 8.0, stop_check_s: float = 30.0) -> dict[str, Any]:
    workdir = out / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    servers = {"main": ServerChild(workdir, "main", mem_limit_gb=mem_limit_gb),
               "embed": ServerChild(workdir, "embed", embeddings=True, mem_limit_gb=mem_limit_gb)}
    needed = {c.get("server", "main") for c in cases}
    for name in needed:
        servers[name].start()
    baseline = {name: probe(servers[name].port) for name in needed}
    results: list[dict[str, Any]] = []
    deaths: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []  # the server went FAILED (an assertion while serving)
    recent: deque[tuple[float, int, str]] = deque(maxlen=64)

    def case_timeout(case: dict[str, Any]) -> float:
        return min(timeout, 10.0) if "raw" in case else timeout
    stderr_by_cat: Counter[str] = Counter()
    probes: list[dict[str, Any]] = []
    results_file = open(out / "results.jsonl", "w")
    lock = threading.Lock()
    t_start = time.monotonic()

    def check_alive(name: str) -> None:
        srv = servers[name]
        if not srv.alive():
            rc = srv.proc.returncode if srv.proc else None
            deaths.append({"kind": "death", "server": name, "generation": srv.generation, "returncode": rc,
                           "suspects": [i for _, i, n in recent if n == name]})
            srv.close_pipes()
            srv.start()

    peak_rss: Counter[str] = Counter()
    current_cat = [""]
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.wait(0.25):
            for srv in servers.values():
                if srv.alive():
                    key = f"{srv.name}:{current_cat[0]}"
                    peak_rss[key] = max(peak_rss[key], srv.rss_bytes())

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    cats = list(dict.fromkeys(c["cat"] for c in cases))
    for cat in cats:
        current_cat[0] = cat
        batch = [c for c in cases if c["cat"] == cat]
        names = {c.get("server", "main") for c in batch}
        before = {n: servers[n].stderr_bytes() for n in names}
        queue = list(batch)
        in_flight: dict[int, dict[str, Any]] = {}

        def restart(name: str, gen: int, kind: str, case: dict[str, Any]) -> None:
            """Record a failure of server generation `gen` once, with its suspects, and restart it."""
            srv = servers[name]
            with srv.restart_lock:
                if srv.generation != gen:
                    return  # another client saw it first
                with lock:
                    now = time.monotonic()
                    # most likely first: requests still in flight, then the latest answered
                    suspects = [c["id"] for c in in_flight.values() if c.get("server", "main") == name]
                    suspects += [case["id"]] + [i for t, i, n in reversed(recent) if n == name and now - t < 3.0]
                    event = {"kind": kind, "server": name, "generation": gen, "seen_on": case["id"],
                             "suspects": list(dict.fromkeys(suspects)),
                             "returncode": srv.proc.returncode if srv.proc is not None else None}
                    (deaths if kind == "death" else failures).append(event)
                srv.kill()
                srv.start()

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    case = queue.pop(0)
                    in_flight[case["id"]] = case
                name = case.get("server", "main")
                srv = servers[name]
                gen = srv.generation
                r = exchange(srv.port, case, case_timeout(case))
                r["id"], r["cat"], r["intent"] = case["id"], case["cat"], case["intent"]
                r["path"], r["method"] = case.get("path"), case.get("method")
                status = r["status"]
                r["hang"] = r["end"] == "timeout"
                body = r.get("body", b"")
                if status is not None and status >= 500:
                    r["class"] = classify_5xx(status, body)
                if isinstance(body, bytes):
                    r["body"] = body[:600].decode("utf-8", "replace")
                model_failed = status == 503 and b"the model failed" in (body if isinstance(body, bytes) else b"")
                with lock:
                    del in_flight[case["id"]]
                    recent.append((time.monotonic(), case["id"], name))
                    if gen != srv.generation or any(e["server"] == name and e["generation"] == gen for e in failures + deaths):
                        r["collateral"] = True  # answered by a server that another request had already broken
                    results.append(r)
                    results_file.write(json.dumps(r) + "\n")
                    if progress and len(results) % 250 == 0:
                        print(f"[{len(results)}/{len(cases)}] {cat} {len(results) / (time.monotonic() - t_start):.1f} req/s",
                              flush=True)
                if not srv.alive():
                    restart(name, gen, "death", case)
                elif model_failed:
                    restart(name, gen, "failed", case)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.3)  # stderr of the last requests
        for n in names:
            check_alive(n)
            stderr_by_cat[cat] += servers[n].stderr_bytes() - before[n]
            p = probe(servers[n].port)
            p.update({"after": cat, "server": n, "same_as_before": {k: p.get(k) == baseline[n].get(k) for k in baseline[n]}})
            probes.append(p)
        if progress:
            print(f"phase {cat}: {len(batch)} cases, stderr +{stderr_by_cat[cat]} B, probe ok={all(probes[-1]['same_as_before'].values())}",
                  flush=True)
    results_file.close()
    sampling.set()
    # the server still serves, its slots are free, and stop() is bounded
    final = {}
    for name in needed:
        srv = servers[name]
        status = srv.command("status") if srv.alive() else {"error": "dead"}
        stop_s = srv.stop()
        final[name] = {"status": status, "stop_seconds": stop_s, "starts": srv.starts}
    # stop() while slow clients hold connections with half-sent requests: is it still bounded?
    srv = ServerChild(workdir, "stop-check", mem_limit_gb=mem_limit_gb)
    srv.start()
    held = []
    for partial in (b"POST /completion HTTP/1.1\r\nHost: x\r\n",
                    b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro", b"GET /hea"):
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(partial)
        held.append(sock)
    time.sleep(0.5)
    t0 = time.monotonic()
    stop_s = srv.stop(timeout=stop_check_s)
    final["stop_with_half_sent_requests"] = {"stop_seconds": stop_s, "waited_s": round(time.monotonic() - t0, 1),
                                             "bounded": stop_s is not None}
    for sock in held:
        sock.close()
    summary = summarize(cases, results, deaths, stderr_by_cat, probes, baseline, final, time.monotonic() - t_start)
    summary["failures"] = len(failures)
    summary["failure_details"] = failures
    by_id = {c["id"]: c for c in cases}
    summary["culprits"] = triage(deaths + failures, by_id, workdir, mem_limit_gb) if deaths or failures else []
    summary["peak_rss_mb"] = {k: round(v / 2**20) for k, v in sorted(peak_rss.items())}
    return summary


def triage(events: list[dict[str, Any]], by_id: dict[int, dict[str, Any]], workdir: Path,
           mem_limit_gb: float, max_events: int = 12) -> list[dict[str, Any]]:
    """Replays each suspect of each death or failure alone on a fresh server: which one does it."""
    culprits: list[dict[str, Any]] = []
    tried: set[int] = set()
    for event in events[:max_events]:
        for case_id in event["suspects"][:16]:
            if case_id in tried:
                continue
            tried.add(case_id)
            case = by_id[case_id]
            srv = ServerChild(workdir, f"triage-{case_id}", embeddings=event["server"] == "embed", mem_limit_gb=mem_limit_gb)
            srv.start()
            try:
                r = exchange(srv.port, case, 60.0)
                time.sleep(0.3)
                alive = srv.alive()
                health = exchange(srv.port, {"method": "GET", "path": "/health"}, 10)["status"] if alive else None
                if not alive or health != 200:
                    culprits.append({"case": case_id, "event": event["kind"], "path": case.get("path"),
                                     "body": (case.get("body") or case.get("raw") or "")[:400],
                                     "status": r["status"], "health_after": health, "alive_after": alive,
                                     "answer": (r.get("body") or b"")[:300].decode("utf-8", "replace")})
                    break
            finally:
                srv.kill() if not srv.alive() else srv.stop()
    return culprits


def summarize(cases, results, deaths, stderr_by_cat, probes, baseline, final, seconds) -> dict[str, Any]:
    own = [r for r in results if not r.get("collateral")]
    fivexx = [r for r in own if r["status"] is not None and r["status"] >= 500]
    client_5xx = [r for r in fivexx if r["intent"] != "valid" and r["status"] not in (501, 503)]
    classes: dict[str, dict[str, Any]] = {}
    for r in client_5xx:
        c = classes.setdefault(r["class"], {"count": 0, "example_case": r["id"], "example_body": r.get("body", "")[:300],
                                            "routes": Counter()})
        c["count"] += 1
        c["routes"][r["path"]] += 1
    for c in classes.values():
        c["routes"] = dict(c["routes"].most_common(8))
    valid = [r for r in own if r["intent"] == "valid"]
    return {
        "requests": len(results),
        "by_category": dict(Counter(r["cat"] for r in results)),
        "deaths": len(deaths), "death_details": deaths,
        "hangs": sum(1 for r in own if r["hang"]),
        "hang_cases": [r["id"] for r in own if r["hang"]][:50],
        "collateral": sum(1 for r in results if r.get("collateral")),
        "held_open": sum(1 for r in results if r["end"] == "held_open"),
        "held_open_cases": [r["id"] for r in results if r["end"] == "held_open"][:50],
        "status": dict(sorted(Counter(str(r["status"]) for r in results).items())),
        "status_by_category": {cat: dict(Counter(str(r["status"]) for r in results if r["cat"] == cat))
                               for cat in dict.fromkeys(r["cat"] for r in results)},
        "5xx_total": len(fivexx),
        "5xx_on_client_errors": len(client_5xx),
        "5xx_classes": dict(sorted(classes.items(), key=lambda kv: -kv[1]["count"])),
        "501": sum(1 for r in fivexx if r["status"] == 501), "503": sum(1 for r in fivexx if r["status"] == 503),
        "valid_requests": len(valid),
        "valid_not_2xx": dict(Counter(f"{r['path']} {r['status']}" for r in valid if not (r["status"] or 0) < 300)),
        "stderr_bytes": sum(stderr_by_cat.values()), "stderr_bytes_by_category": dict(stderr_by_cat),
        "probes_all_same_as_before": all(all(p["same_as_before"].values()) for p in probes),
        "probe_failures": [p for p in probes if not all(p["same_as_before"].values())][:5],
        "baseline": baseline, "final": final, "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request before it counts as a hang")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--only", default=None, help="comma-separated categories")
    p.add_argument("--mem-limit-gb", type=float, default=8.0, help="RLIMIT_AS of the server child (0: none)")
    p.add_argument("--replay", type=Path, default=None, help="run the cases of a .jsonl file (e.g. failures.jsonl)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--embeddings", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        _serve_main(args)
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="http-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.replay:
        cases = [json.loads(line) for line in args.replay.read_text().splitlines() if line.strip()]
    else:
        cases = generate(args.requests, args.seed)
        if args.only:
            cases = [c for c in cases if c["cat"] in args.only.split(",")]
    (out / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    print(f"{len(cases)} requests -> {out}", flush=True)
    summary = run(cases, out, clients=args.clients, timeout=args.timeout, mem_limit_gb=args.mem_limit_gb)
    summary["command"] = " ".join(["http_fuzz.py"] + (argv if argv is not None else sys.argv[1:]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    by_id = {c["id"]: c for c in cases}
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    bad_ids = {r["id"] for r in results if r["hang"] or (r["status"] and r["status"] >= 500 and r["intent"] != "valid"
                                                         and r["status"] not in (501, 503))}
    bad_ids |= {s for d in summary["death_details"] + summary["failure_details"] for s in d["suspects"]}
    (out / "failures.jsonl").write_text("".join(json.dumps(by_id[i]) + "\n" for i in sorted(bad_ids)))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("baseline", "status_by_category")}, indent=2,
                     default=str))
    ok = (summary["deaths"] == 0 and summary["failures"] == 0 and summary["hangs"] == 0
          and summary["probes_all_same_as_before"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
