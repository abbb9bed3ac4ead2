"""ServerConfig: validation at construction, and the llama-server flags it becomes."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaproc import ServerConfig, errors


def test_defaults_map_to_llama_server_flags(tiny_model):
    argv = ServerConfig(model_path=tiny_model).to_argv()
    assert argv[:2] == ["--model", str(tiny_model)]
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--host"] == "127.0.0.1"
    assert flags["--port"] == "0"
    assert flags["--parallel"] == "4"
    assert "--kv-unified" in argv


def test_config_is_frozen_and_keyword_only(tiny_model):
    cfg = ServerConfig(model_path=tiny_model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        ServerConfig(tiny_model)  # type: ignore[misc]


@pytest.mark.parametrize(
    "field, value",
    [
        ("context_size", -1), ("batch_size", 0), ("threads", 0), ("port", 70000), ("port", -1),
        ("parallel", 0), ("memory_limit", 0), ("gpu_layers", -2), ("host", ""), ("api_key", ""),
        ("context_size", 1.5), ("port", True), ("embeddings", "yes"), ("extra_args", "--temp 0.2"),
        ("extra_args", ("--temp", 0.2)),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(tiny_model, field, value):
    with pytest.raises(errors.ConfigError, match=field.split("_")[0]) as info:
        ServerConfig(model_path=tiny_model, **{field: value})
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("flag", ["--port", "-c", "--ctx-size", "-m", "--threads", "--api-key", "--embeddings"])
def test_extra_args_may_not_repeat_a_typed_field(tiny_model, flag):
    with pytest.raises(errors.ConfigError, match="instead"):
        ServerConfig(model_path=tiny_model, extra_args=(flag, "1"))


@pytest.mark.parametrize("flag", ["--help", "-h", "--version", "--list-devices", "--completion-bash", "--cache-list"])
def test_process_only_flags_are_rejected(tiny_model, flag):
    with pytest.raises(errors.ConfigError, match="separate llama-server process"):
        ServerConfig(model_path=tiny_model, extra_args=(flag,))


@pytest.mark.parametrize("args", [("-hf", "org/repo"), ("--model-url", "https://example.invalid/m.gguf")])
def test_model_downloads_are_rejected(tiny_model, args):
    with pytest.raises(errors.ConfigError, match="local GGUF"):
        ServerConfig(model_path=tiny_model, extra_args=args)


def test_unknown_flag_is_named(tiny_model):
    with pytest.raises(errors.ConfigError, match="--no-such-flag"):
        ServerConfig(model_path=tiny_model, extra_args=("--no-such-flag",))


def test_bad_flag_value_is_named(tiny_model):
    with pytest.raises(errors.ConfigError, match="--temp"):
        ServerConfig(model_path=tiny_model, extra_args=("--temp", "warm"))
    with pytest.raises(errors.ConfigError, match="expects a value"):
        ServerConfig(model_path=tiny_model, extra_args=("--temp",))


def test_extra_args_pass_through_unchanged(tiny_model):
    cfg = ServerConfig(model_path=tiny_model, extra_args=["--temp", "0.2", "--metrics"])
    assert cfg.extra_args == ("--temp", "0.2", "--metrics")
    assert cfg.to_argv()[-3:] == ["--temp", "0.2", "--metrics"]


@settings(max_examples=60, deadline=None)
@given(
    context_size=st.integers(0, 1 << 20), batch_size=st.integers(1, 1 << 16),
    threads=st.none() | st.integers(1, 256), port=st.integers(0, 65535), parallel=st.integers(1, 64),
    gpu_layers=st.none() | st.integers(-1, 999), api_key=st.none() | st.text(min_size=1, max_size=20).filter(str.strip),
)
def test_valid_configs_round_trip_through_llama_servers_parser(tiny_model, context_size, batch_size, threads, port,
                                                                parallel, gpu_layers, api_key):
    # construction runs llama.cpp's own argument parser on to_argv(): it must accept every valid config
    cfg = ServerConfig(model_path=tiny_model, context_size=context_size, batch_size=batch_size, threads=threads,
                       port=port, parallel=parallel, gpu_layers=gpu_layers, api_key=api_key)
    argv = cfg.to_argv()
    assert argv[argv.index("--ctx-size") + 1] == str(context_size)
    assert argv[argv.index("--port") + 1] == str(port)
    assert ("--api-key" in argv) == (api_key is not None)
    assert cfg.replace(port=port) == cfg
