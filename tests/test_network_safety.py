"""Safe network defaults: loopback unless a key is set, API keys on every route but /health,
file-writing routes confined to their directory, request size limits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import tiny_config
from http_client import request
from llamaproc import LlamaServer, ServerConfig, errors
from llamaproc._native import core

KEY = "s3cret-key-123"


def test_a_remote_bind_without_a_key_is_refused_everywhere(tiny_model):
    with pytest.raises(errors.ConfigError, match="allow_unauthenticated_remote"):
        ServerConfig(model_path=tiny_model, host="0.0.0.0")
    with pytest.raises(errors.ConfigError, match="without an API key"):
        LlamaServer.from_args(["-m", str(tiny_model), "--host", "0.0.0.0", "--port", "0"], use_env=False)
    with pytest.raises(errors.ConfigError, match="without an API key"):  # the native backstop
        core.EmbeddedServer(["-m", str(tiny_model), "--host", "0.0.0.0", "--port", "0"]).start()
    r = subprocess.run([sys.executable, "-m", "llamaproc", "serve", str(tiny_model), "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--allow-unauthenticated-remote" in r.stderr
    ServerConfig(model_path=tiny_model, host="0.0.0.0", api_key=KEY)  # a key makes it acceptable
    ServerConfig(model_path=tiny_model, host="localhost")


def test_an_explicit_opt_in_allows_a_remote_bind(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, host="0.0.0.0", allow_unauthenticated_remote=True))
    try:
        assert request("GET", f"http://127.0.0.1:{server.port}/health")[0] == 200
    finally:
        server.stop()


def test_every_route_checks_the_api_key_and_health_stays_open(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, api_key=KEY))
    try:
        routes = [("GET", path) for path in ("/props", "/models", "/v1/models", "/slots", "/metrics", "/lora-adapters")]
        routes += [("POST", path) for path in (
            "/completion", "/completions", "/v1/completions", "/chat/completions", "/v1/chat/completions",
            "/v1/responses", "/v1/messages", "/v1/messages/count_tokens", "/infill", "/embedding", "/embeddings",
            "/v1/embeddings", "/rerank", "/v1/rerank", "/tokenize", "/detokenize", "/apply-template",
            "/v1/chat/completions/input_tokens", "/props", "/lora-adapters", "/v1/streams/lookup")]
        wrong = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {KEY}x"},
                 {"Authorization": f"Bearer {KEY[:-1]}"}, {"Authorization": "Bearer "}, {"X-Api-Key": "nope"}]
        right = [{"Authorization": f"Bearer {KEY}"}, {"X-Api-Key": KEY}]
        body = {"messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "content": "hi", "tokens": [300],
                "max_tokens": 1, "n_predict": 1, "input": "hi", "input_extra": [], "query": "q", "documents": ["d"]}
        for method, path in routes:
            for headers in wrong:
                status, answer = request(method, server.url + path, body if method == "POST" else None, headers=headers)
                assert status == 401, (method, path, headers, status)
                assert answer["error"]["type"] == "authentication_error"
            for headers in right:
                status, _ = request(method, server.url + path, body if method == "POST" else None, headers=headers)
                assert status != 401, (method, path, headers)
        for path in ("/health", "/v1/health"):
            assert request("GET", server.url + path)[0] == 200  # open without a key
    finally:
        server.stop()


def test_slot_files_stay_in_their_directory(tiny_model, tmp_path):
    slots = tmp_path / "slots"
    slots.mkdir()
    server = LlamaServer.start(tiny_config(tiny_model, extra_args=("--slot-save-path", str(slots))))
    try:
        assert request("POST", server.url + "/completion", {"prompt": "hello", "n_predict": 2, "id_slot": 0})[0] == 200
        for name in ("../escaped.bin", "/tmp/absolute.bin", "a/b.bin", "..", "x\\..\\y", ""):
            status, answer = request("POST", server.url + "/slots/0?action=save", {"filename": name})
            assert status == 400, (name, status, answer)
        assert not (tmp_path / "escaped.bin").exists()
        status, answer = request("POST", server.url + "/slots/0?action=save", {"filename": "kept.bin"})
        assert status == 200, answer
        assert (slots / "kept.bin").is_file()
        status, _ = request("POST", server.url + "/slots/0?action=restore", {"filename": "../kept.bin"})
        assert status == 400
    finally:
        server.stop()


def test_request_bodies_over_the_limit_get_413(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, max_request_bytes=4096))
    try:
        status, answer = request("POST", server.url + "/v1/completions", {"prompt": "x" * 10_000, "max_tokens": 1})
        assert status == 413 and "more than this server accepts (4096)" in answer["error"]["message"]
        assert answer["error"]["code"] == 413  # the body says what the status line says
        assert request("POST", server.url + "/v1/completions", {"prompt": "small", "max_tokens": 1})[0] == 200
    finally:
        server.stop()
    with pytest.raises(errors.ConfigError):
        ServerConfig(model_path=tiny_model, max_request_bytes=0)
