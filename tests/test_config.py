"""ServerConfig: validation at construction, and the llama-server flags it becomes."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
from conftest import tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaproc import LlamaServer, ServerConfig, _logging, errors
from llamaproc._native import core
from llamaproc.flags import split_process_flags


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
    with pytest.raises(errors.ConfigError, match="flag '--temp': expects a number, got 'warm'"):
        ServerConfig(model_path=tiny_model, extra_args=("--temp", "warm"))
    with pytest.raises(errors.ConfigError, match="flag '--keep': '9{30}' is out of range"):
        ServerConfig(model_path=tiny_model, extra_args=("--keep", "9" * 30))
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


# -- flags acting on process-wide state (llamaproc/flags.py, cpp/core/argv_parser.cpp) ----------

REFUSED = [
    (("--log-file", "server.log"), "logging.FileHandler"),
    (("--log_file", "server.log"), "logging.FileHandler"),  # the native parser reads _ as -
    (("--log-disable",), "raise that logger's level"),
    (("--log-colors", "on"), "logging.Formatter"),
    (("--log-prefix",), "logging.Formatter"),
    (("--no-log-prefix",), "logging.Formatter"),
    (("--log-timestamps",), "logging.Formatter"),
    (("--log-jsonl",), "logging.Formatter"),
    (("--log-prompts-dir", "prompts"), "creates directories"),
    (("--numa", "distribute"), "numactl"),
    (("--prio", "2"), "os.nice"),
]


@pytest.fixture
def llamaproc_logger():
    """The `llamaproc` logger at WARNING for the test; its level (and the native one) restored after."""
    logger = logging.getLogger("llamaproc")
    saved = logger.level
    logger.setLevel(logging.WARNING)
    _logging.sync_log_level()
    yield logger
    logger.setLevel(saved)
    _logging.sync_log_level()


@pytest.mark.parametrize("args, reason", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_process_wide_flags_are_refused_with_the_reason(tiny_model, args, reason):
    pattern = f"^{args[0].replace('_', '-')}: .*{re.escape(reason)}"
    with pytest.raises(errors.ConfigError, match=pattern):
        ServerConfig(model_path=tiny_model, extra_args=args)
    with pytest.raises(errors.ConfigError, match=pattern):
        LlamaServer.from_args(["-m", str(tiny_model), *args], use_env=False)


@pytest.mark.parametrize("args, reason", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_the_native_parser_refuses_them_too_with_the_same_message(tiny_model, tmp_path, monkeypatch, args, reason):
    # the backstop for anything that reaches _core without going through llamaproc.flags
    monkeypatch.chdir(tmp_path)  # a handler that ran anyway would write here
    with pytest.raises(errors.ConfigError) as python:
        split_process_flags(args)
    with pytest.raises(errors.ConfigError) as native:
        core.validate_server_args(["-m", str(tiny_model), *args], False)
    assert str(native.value) == str(python.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", [["-v"], ["--log-verbose"], ["-lv", "5"], ["--log-verbosity", "3"]])
def test_the_native_parser_refuses_verbosity_flags_that_were_not_mapped(tiny_model, args):
    with pytest.raises(errors.ConfigError, match=f"^{args[0]}: llama.cpp's log threshold is process-wide"):
        core.validate_server_args(["-m", str(tiny_model), *args], False)


@pytest.mark.parametrize(
    "env, value",
    [("LLAMA_ARG_LOG_FILE", "server.log"), ("LLAMA_ARG_LOG_COLORS", "on"), ("LLAMA_ARG_LOG_PREFIX", "1"),
     ("LLAMA_ARG_NO_LOG_PREFIX", "1"), ("LLAMA_ARG_LOG_TIMESTAMPS", "1"), ("LLAMA_ARG_LOG_JSONL", "1"),
     ("LLAMA_ARG_NUMA", "distribute")],
)
def test_process_wide_environment_variables_are_refused_where_env_defaults_apply(tiny_model, tmp_path, monkeypatch,
                                                                                 env, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(env, value)
    argv = ["-m", str(tiny_model)]
    with pytest.raises(errors.ConfigError, match=f"^unset the environment variable {env} "):
        LlamaServer.from_args(argv, use_env=True)
    with pytest.raises(errors.ConfigError, match=f"^unset the environment variable {env} "):
        core.validate_server_args(argv, True)
    core.validate_server_args(argv, False)  # without environment defaults the variable is not read
    assert not (tmp_path / "server.log").exists()  # common_log_set_file() would have created it


def test_validation_creates_no_prompt_log_directory(tiny_model, tmp_path):
    target = tmp_path / "x"
    with pytest.raises(errors.ConfigError, match="--log-prompts-dir"):
        ServerConfig(model_path=tiny_model, extra_args=("--log-prompts-dir", str(target)))
    with pytest.raises(errors.ConfigError, match="--log-prompts-dir"):
        core.validate_server_args(["-m", str(tiny_model), "--log-prompts-dir", str(target)], False)
    assert not target.exists()


@pytest.mark.parametrize("args", [("-lv", "5"), ("-v",), ("--log-verbosity", "0")])
def test_validating_verbosity_flags_changes_neither_the_native_threshold_nor_the_logger(tiny_model, monkeypatch,
                                                                                       llamaproc_logger, args):
    before = core._native_log_verbosity()
    cfg = ServerConfig(model_path=tiny_model, extra_args=args)
    monkeypatch.setenv("LLAMA_ARG_LOG_VERBOSITY", "5")
    core.validate_server_args(cfg.to_argv(), True)  # the variable is left to llamaproc.flags too
    assert core._native_log_verbosity() == before
    assert llamaproc_logger.level == logging.WARNING


@pytest.mark.parametrize(
    "args, level",
    [(["-v"], logging.DEBUG), (["--verbose"], logging.DEBUG), (["--log-verbose"], logging.DEBUG),
     (["-lv", "5"], logging.DEBUG), (["-lv", "4"], logging.DEBUG), (["--verbosity", "3"], logging.INFO),
     (["--log-verbosity", "2"], logging.WARNING), (["--log_verbosity", "1"], logging.ERROR),
     (["-lv", "0"], logging.CRITICAL), (["-v", "-lv", "2"], logging.WARNING), (["--temp", "0.2"], None)],
)
def test_verbosity_flags_map_to_a_logging_level_and_leave_the_argv(args, level):
    argv, got = split_process_flags(["-m", "m.gguf", *args, "--metrics"])
    assert got == level
    assert argv == ["-m", "m.gguf", *([] if level is not None else args), "--metrics"]


def test_a_value_that_looks_like_a_flag_stays_a_value():
    # llama.cpp's own table says which flags take values: "-v" after --alias is the alias
    assert split_process_flags(["--alias", "-v", "--api-key", "-lv"]) == (["--alias", "-v", "--api-key", "-lv"], None)
    assert split_process_flags(["--alias", "--log-file", "-v"]) == (["--alias", "--log-file"], logging.DEBUG)


@pytest.mark.parametrize("args, message", [(["-lv"], "expects a value"), (["-lv", "loud"], "integer")])
def test_bad_verbosity_values_are_config_errors(tiny_model, args, message):
    with pytest.raises(errors.ConfigError, match=message):
        ServerConfig(model_path=tiny_model, extra_args=args)


def test_verbosity_environment_variable_maps_and_flags_win(monkeypatch):
    monkeypatch.setenv("LLAMA_ARG_LOG_VERBOSITY", "3")
    assert split_process_flags(["-m", "m.gguf"], use_env=True) == (["-m", "m.gguf"], logging.INFO)
    assert split_process_flags(["-m", "m.gguf"], use_env=False) == (["-m", "m.gguf"], None)
    assert split_process_flags(["-v"], use_env=True) == ([], logging.DEBUG)
    monkeypatch.setenv("LLAMA_ARG_LOG_VERBOSITY", "loud")
    with pytest.raises(errors.ConfigError, match="LLAMA_ARG_LOG_VERBOSITY"):
        split_process_flags([], use_env=True)


def test_config_keeps_verbosity_flags_but_llama_cpp_never_sees_them(tiny_model):
    cfg = ServerConfig(model_path=tiny_model, extra_args=("--temp", "0.2", "-lv", "3"))
    assert cfg.extra_args == ("--temp", "0.2", "-lv", "3")
    assert cfg.to_argv()[-2:] == ["--temp", "0.2"]
    assert cfg.log_level == logging.INFO
    assert ServerConfig(model_path=tiny_model).log_level is None


def test_verbosity_flags_set_the_logger_level_when_the_server_starts(tiny_model, llamaproc_logger, caplog):
    threshold = core._native_log_verbosity()
    cfg = tiny_config(tiny_model, extra_args=("-v",))
    assert llamaproc_logger.level == logging.WARNING  # not at validation
    with LlamaServer.start(cfg):
        assert llamaproc_logger.level == logging.DEBUG
        # llama.cpp's own debug lines are formatted while the logger is at DEBUG (process-wide)
        assert core._native_log_verbosity() == 5
    debug = [r.getMessage() for r in caplog.records if r.name == "llamaproc" and r.levelno == logging.DEBUG]
    assert any(m.startswith("que ") for m in debug), debug[:5]  # the server's LOG_DBG lines
    llamaproc_logger.setLevel(logging.WARNING)
    import llamaproc

    llamaproc.sync_log_level()
    assert core._native_log_verbosity() == threshold  # and back when the logger is quiet again


def test_from_args_verbosity_applies_at_start_and_never_makes_the_logger_quieter(tiny_model, llamaproc_logger):
    with LlamaServer.from_args(["-m", str(tiny_model), "-t", "1", "-c", "256", "-lv", "3"], use_env=False) as server:
        assert llamaproc_logger.level == logging.INFO
        assert "-lv" not in server.args
    llamaproc_logger.setLevel(logging.DEBUG)
    with LlamaServer.from_args(["-m", str(tiny_model), "-t", "1", "-c", "256", "-lv", "1"], use_env=False):
        assert llamaproc_logger.level == logging.DEBUG
