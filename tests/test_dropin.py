"""Drop-in for llama-server (issue 18): what `llama-server FLAGS` does, `serve FLAGS` does too.
Here: `-v` responses carry `__verbose`, and `--ui-mcp-proxy` serves the web UI's CORS proxy."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from http_client import get, post, request
from llamaproc import LlamaServer, ModelPool, sync_log_level

CHAT = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 2}


@pytest.fixture(autouse=True)
def _keep_the_log_level():
    """`-v` makes the `llamaproc` logger (and the native log) DEBUG for the whole process, as
    from_args() documents; tests after these must not run with a debug log."""
    logger = logging.getLogger("llamaproc")
    level = logger.level
    yield
    logger.setLevel(level)
    sync_log_level()


def server_from(model: Path, *flags: str) -> LlamaServer:
    return LlamaServer.from_args(["-m", str(model), "--port", "0", "-c", "512", "-t", "1", *flags], use_env=False)


# -- -v: every completion response carries __verbose ------------------------------------------

@pytest.mark.parametrize("flag", [["-v"], ["--verbose"], ["-lv", "10"]])
def test_verbose_flags_add_the_verbose_field_to_responses(tiny_model, flag):
    with server_from(tiny_model, *flag) as server:
        status, chat = post(server.url + "/v1/chat/completions", CHAT)
        assert status == 200 and "hello there" in chat["__verbose"]["prompt"]  # the formatted prompt
        status, text = post(server.url + "/v1/completions", {"prompt": "abc", "max_tokens": 2})
        assert status == 200 and text["__verbose"]["prompt"].endswith("abc")


def test_without_verbose_the_field_is_absent_unless_a_request_asks(tiny_model):
    with server_from(tiny_model, "-lv", "3") as server:  # a log level below 10: logging only
        assert "__verbose" not in post(server.url + "/v1/chat/completions", CHAT)[1]
        assert "__verbose" in post(server.url + "/v1/chat/completions", {**CHAT, "verbose": True})[1]


def test_an_assistant_prefill_shows_in_the_verbose_prompt(tiny_model):
    messages = [{"role": "user", "content": "name a colour"}, {"role": "assistant", "content": "The colour is"}]
    with server_from(tiny_model, "-v") as server:
        status, chat = post(server.url + "/v1/chat/completions", {"messages": messages, "max_tokens": 2})
        assert status == 200
        prompt = chat["__verbose"]["prompt"]
        assert prompt.rstrip().endswith("The colour is")  # continued, not closed by the template


def test_a_pool_from_router_flags_passes_verbose_to_its_models(tiny_model, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.gguf").symlink_to(tiny_model)
    with ModelPool.from_args(["--models-dir", str(folder), "--port", "0", "-c", "512", "-v"], use_env=False,
                             read_cache=False) as pool:
        status, chat = post(pool.url + "/v1/chat/completions", {**CHAT, "model": "tiny"})
        assert status == 200 and "__verbose" in chat


# -- --ui-mcp-proxy: the web UI's CORS proxy ----------------------------------------------------

class _Target(BaseHTTPRequestHandler):
    """What the proxy forwards to: records each request, answers JSON."""

    seen: list[dict] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        _Target.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                             "body": body})
        data = json.dumps({"echo": body}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass


@pytest.fixture
def target() -> Iterator[str]:
    _Target.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_cors_proxy_is_off_unless_asked_for(tiny_model, target):
    with server_from(tiny_model) as server:
        status, body = get(server.url + f"/cors-proxy?url={target}/mcp")
        assert status == 403 and body["error"]["type"] == "feature_disabled"
        assert get(server.url + "/props")[1]["cors_proxy_enabled"] is False
    assert _Target.seen == []


def test_the_cors_proxy_forwards_with_only_the_headers_it_is_told(tiny_model, target):
    with server_from(tiny_model, "--ui-mcp-proxy") as server:
        assert get(server.url + "/props")[1]["cors_proxy_enabled"] is True
        headers = {"X-Llama-Server-Proxy-Header-Authorization": "Bearer mcp-token", "X-Private": "stays here",
                   "Cookie": "session=1"}
        status, body = request("POST", server.url + f"/cors-proxy?url={target}/mcp/rpc?x=1", {"jsonrpc": "2.0"},
                               headers=headers)
        assert status == 201 and json.loads(body["echo"]) == {"jsonrpc": "2.0"}
        seen = _Target.seen[-1]
        assert seen["method"] == "POST" and seen["path"] == "/mcp/rpc?x=1"
        forwarded = {k.lower(): v for k, v in seen["headers"].items()}
        assert forwarded["authorization"] == "Bearer mcp-token"
        assert "x-private" not in forwarded and "cookie" not in forwarded
        assert not any(k.startswith("x-llama-server-proxy-header") for k in forwarded)
        status, _ = get(server.url + f"/cors-proxy?url={target}/tools")
        assert status == 201 and _Target.seen[-1]["method"] == "GET"


@pytest.mark.parametrize("url, reason", [
    ("", "no scheme"),
    ("http://", "missing host"),
    ("ftp://127.0.0.1/x", "unsupported URL scheme"),
    ("http://user:secret@127.0.0.1/x", "authentication in target URL"),
])
def test_the_cors_proxy_refuses_what_llama_server_refuses(tiny_model, url, reason):
    with server_from(tiny_model, "--ui-mcp-proxy") as server:
        status, body = get(server.url + f"/cors-proxy?url={url}")
        assert status == 500 and reason in body["error"]["message"]


# -- LLAMA_SERVER_DEBUG_FAKE_TIMING: llama-server's router waits 2 s per load and per request --------

def test_fake_timing_delays_each_load_once_as_the_router_does(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_SERVER_DEBUG_FAKE_TIMING", "1")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.gguf").symlink_to(tiny_model)
    with ModelPool.from_args(["--models-dir", str(folder), "--port", "0", "-c", "512"], use_env=True,
                             read_cache=False) as pool:
        t0 = time.monotonic()
        pool.load("tiny")
        took = time.monotonic() - t0
        # once per load: 2 s (a delay per load-progress step took 2 s times the steps: 6 s and more)
        assert 1.9 <= took < 5.0, took
        t0 = time.monotonic()
        assert post(pool.url + "/v1/chat/completions", {**CHAT, "model": "tiny"})[0] == 200
        assert time.monotonic() - t0 >= 1.9  # and once per request, as a proxied request waits


# -- dedup-cache-models: a preset's model and its draft hide their cache twins -------------------

def _cache_model(cache: Path, repo: str, filename: str, source: Path) -> None:
    """One model in llama.cpp's cache, in the Hugging Face hub layout."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / filename).symlink_to(source)


def test_dedup_cache_models_hides_the_model_and_its_draft_until_it_is_removed(tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _cache_model(cache, "someone/main-GGUF", "main-Q4_1.gguf", tiny_model)
    _cache_model(cache, "someone/draft-GGUF", "draft-Q4_1.gguf", tiny_model)
    monkeypatch.setenv("LLAMA_CACHE", str(cache))
    preset = tmp_path / "models.ini"
    section = "[chat]\nhf-repo = someone/main-GGUF:Q4_1\nspec-draft-hf = someone/draft-GGUF:Q4_1\n"
    preset.write_text(section + "dedup-cache-models = 1\n")
    twins = {"someone/main-GGUF:Q4_1", "someone/draft-GGUF:Q4_1"}
    with ModelPool.from_args(["--models-preset", str(preset), "--port", "0", "-c", "256"], use_env=False,
                             read_cache=True) as pool:
        listed = {m["id"] for m in get(pool.url + "/models")[1]["data"]}
        assert "chat" in listed and not listed & twins, listed
        preset.write_text(section)  # the flag removed: both cache models are listed again
        status, body = get(pool.url + "/models?reload=1")
        assert status == 200 and twins <= {m["id"] for m in body["data"]}
