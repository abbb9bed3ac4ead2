"""ServerConfig: what a server runs, validated when it is made."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .errors import ConfigError
from .flags import flag_name, split_process_flags
from .messages import message
from .recovery import RestartPolicy

# Flags that a typed field of ServerConfig sets; giving them in extra_args too is ambiguous.
_FIELD_FLAGS: dict[str, str] = {
    "-m": "model_path", "--model": "model_path",
    "-c": "context_size", "--ctx-size": "context_size",
    "-b": "batch_size", "--batch-size": "batch_size",
    "-t": "threads", "--threads": "threads",
    "-ngl": "gpu_layers", "--gpu-layers": "gpu_layers", "--n-gpu-layers": "gpu_layers",
    "--host": "host", "--port": "port",
    "-np": "parallel", "--parallel": "parallel",
    "--api-key": "api_key",
    "--embedding": "embeddings", "--embeddings": "embeddings",
    "--rpc": "rpc_workers",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a unix socket path counts)."""
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.") or host.endswith(".sock")


class _ModelFields(Protocol):
    @property
    def model_path(self) -> str | os.PathLike[str]: ...
    @property
    def context_size(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def threads(self) -> int | None: ...
    @property
    def gpu_layers(self) -> int | None: ...
    @property
    def parallel(self) -> int: ...
    @property
    def embeddings(self) -> bool: ...
    @property
    def rpc_workers(self) -> Sequence[str]: ...
    @property
    def speculation(self) -> bool: ...


def model_argv(fields: _ModelFields, more: Sequence[str] = ()) -> list[str]:
    """The llama-server flags of the fields a model's configuration has in common
    (ServerConfig, ModelSpec): flags with values first, then ``more``, then switches."""
    argv = ["--model", str(fields.model_path), "--ctx-size", str(fields.context_size),
            "--batch-size", str(fields.batch_size), "--parallel", str(fields.parallel)]
    if fields.threads is not None:
        argv += ["--threads", str(fields.threads)]
    if fields.gpu_layers is not None:
        argv += ["--gpu-layers", str(fields.gpu_layers)]
    if fields.rpc_workers:
        argv += ["--rpc", ",".join(fields.rpc_workers)]
    argv += more
    if not fields.speculation:
        argv += ["--spec-type", "none"]  # llama-server's spelling; without it llamaproc drafts n-grams
    if fields.parallel > 1:
        argv.append("--kv-unified")  # one shared KV pool: any request may use the whole context
    if fields.embeddings:
        argv.append("--embeddings")
    return argv


def check_model_fields(fields: _ModelFields) -> str:
    """Validates the fields of ``model_argv()``; returns the model path as a string."""
    if not isinstance(fields.model_path, (str, os.PathLike)) or not str(fields.model_path):
        raise ConfigError(message("config.model_path", value=fields.model_path))
    _int_field("context_size", fields.context_size, minimum=0)
    _int_field("batch_size", fields.batch_size, minimum=1)
    _int_field("threads", fields.threads, minimum=1, optional=True)
    _int_field("gpu_layers", fields.gpu_layers, minimum=-1, optional=True)
    _int_field("parallel", fields.parallel, minimum=1)
    for name in ("embeddings", "speculation"):
        if not isinstance(getattr(fields, name), bool):
            raise ConfigError(message("config.not_bool", name=name, value=getattr(fields, name)))
    workers = fields.rpc_workers
    if isinstance(workers, (str, bytes)) or not isinstance(workers, Sequence) or not all(
            isinstance(w, str) and w.rpartition(":")[0] and w.rpartition(":")[2].isdigit() and "," not in w
            for w in workers):
        raise ConfigError(message("config.rpc_workers", value=workers))
    return str(Path(fields.model_path))


#: The flags that choose a speculation type or a draft model (the native default, in
#: ``cpp/core/server/draft_policy.cpp``, steps aside for the same list: ``_core.speculation_flags()``).
SPECULATION_FLAGS = ("--spec-type", "--spec-default", "--spec-draft-model", "-md", "--model-draft",
                     "--spec-draft-hf", "-hfd", "-hfrd", "--hf-repo-draft")


def check_speculation(speculation: bool, extra_args: Sequence[str]) -> None:
    """``speculation=False`` with flags in ``extra_args`` that choose a speculation type is
    ambiguous: refused."""
    if speculation:
        return
    for arg in extra_args:
        if flag_name(arg) in SPECULATION_FLAGS:
            raise ConfigError(message("config.speculation_conflict", arg=arg))


#: What ``isolation=`` accepts.
ISOLATION_MODES = ("none", "process")


def check_isolation(value: object) -> None:
    if value not in ISOLATION_MODES:
        raise ConfigError(message("config.isolation", value=value, modes=", ".join(ISOLATION_MODES)))
    if value == "process" and os.name != "posix":  # the channel is a unix socket
        raise ConfigError(message("config.isolation_posix"))


def _int_field(name: str, value: object, *, minimum: int, maximum: int | None = None,
               optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(message("config.not_int", name=name, value=value))
    if value < minimum or (maximum is not None and value > maximum):
        if maximum is None:
            raise ConfigError(message("config.int_at_least", name=name, minimum=minimum, value=value))
        raise ConfigError(message("config.int_between", name=name, minimum=minimum, maximum=maximum, value=value))


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Configuration of one embedded llama.cpp server.

    Every field maps to a llama-server flag (:meth:`to_argv`); ``extra_args`` passes any other
    llama-server flag through unchanged, e.g. ``extra_args=("--temp", "0.2", "--metrics")``.
    Invalid values raise :class:`~llamaproc.errors.ConfigError` (also a ``ValueError``) here,
    not when the server starts.

    Attributes:
        model_path: Path of a local ``.gguf`` file.
        context_size: Total KV-cache size in tokens, shared by all slots (``-c``); 0 means the
            model's training context.
        batch_size: Logical batch size for prompt processing (``-b``).
        threads: CPU threads for generation and prompt processing (``-t``), fixed. None (the
            default) lets the CPU governor choose before each decode step: every physical core
            while the host's own threads are idle, a core fewer for each one they keep busy,
            and turns with the other models of the process (``metrics().decode_threads``).
        gpu_layers: Layers to offload to a GPU (``-ngl``); None keeps llama.cpp's default.
        host: Address to listen on. The default serves this machine only.
        port: TCP port; 0 picks a free one (read it back from ``LlamaServer.port``).
        memory_limit: Bytes the model, KV cache, compute buffers and prompt cache may use
            together; checked before anything is loaded against what an earlier load of the
            same file and flags held, else llama.cpp's own dry-run estimate
            (:mod:`llamaproc.memory`), and against what the load holds once loaded.
        parallel: Slots, i.e. requests decoded together (``-np``); they share the context.
        api_key: Require this key (``Authorization: Bearer KEY``) on every endpoint but /health.
        embeddings: Serve the embeddings endpoints (``--embeddings``).
        speculation: Speculative decoding with drafts copied from the context (n-gram lookup, no
            draft model), its draft length chosen per request and step by what drafting has
            earned (see the README, *Speculation*). False passes ``--spec-type none``. A
            ``--spec-type`` (or a draft model) in ``extra_args`` replaces llamaproc's choice.
        rpc_workers: ``host:port`` of RPC workers (``python -m llamaproc rpc-worker``) to place
            layers of the model on (``--rpc``); they serve this server only, not the others in
            the process. The server fails (typed error, process alive) if a worker goes away.
        extra_args: Further llama-server flags, as separate strings. ``-v`` and ``-lv N``
            are not passed on: llama.cpp's log threshold is process-wide, so they set the
            ``llamaproc`` logger's level when the server starts (:attr:`log_level`). Flags
            that act on the whole process (``--log-file``, ``--numa``, ``--prio``, ...) raise
            ConfigError with the reason (see :mod:`llamaproc.flags`).
        restart: Restart automatically when the model fails after the server was ready (see
            :class:`~llamaproc.recovery.RestartPolicy`); None (the default) leaves a failed
            server FAILED until it is stopped.
        allow_unauthenticated_remote: Listening on anything but loopback without an
            ``api_key`` is refused (anyone on the network could use the server); True allows it.
        max_request_bytes: Request bodies larger than this get HTTP 413.
        isolation: ``"none"`` (the default) runs llama.cpp in this process. ``"process"`` runs
            it in a child process with the same API: a native crash (an abort in ggml, a
            segfault, the OOM killer) ends the child, never this process; the server goes
            FAILED with the cause and ``restart`` brings it back on the same port. See the
            README, *Process isolation*.
        hard_memory_limit: With ``isolation="process"`` and ``memory_limit``: the OS holds the
            child to it too (``RLIMIT_DATA`` on Linux and other POSIX systems): its private
            writable memory (heap, KV cache, compute buffers, prompt cache, weights read with
            ``--no-mmap``) may grow by at most ``memory_limit`` beyond what the child held before
            loading, plus 256 MiB for thread stacks. An allocation past it fails inside the child
            (a failed load is a typed error; a failure while serving may end the child, never the
            host). Weights mapped from the file (the default) are page cache and not counted.
    """

    model_path: str | os.PathLike[str]
    context_size: int = 4096
    batch_size: int = 512
    threads: int | None = None
    gpu_layers: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    memory_limit: int | None = None
    parallel: int = 4
    api_key: str | None = None
    embeddings: bool = False
    speculation: bool = True
    rpc_workers: Sequence[str] = ()
    extra_args: Sequence[str] = field(default_factory=tuple)
    restart: RestartPolicy | None = None
    allow_unauthenticated_remote: bool = False
    max_request_bytes: int = 32 * 2**20
    isolation: str = "none"
    hard_memory_limit: bool = False

    def __post_init__(self) -> None:
        if self.restart is not None and not isinstance(self.restart, RestartPolicy):
            raise ConfigError(message("config.restart", value=self.restart))
        check_isolation(self.isolation)
        if not isinstance(self.hard_memory_limit, bool):
            raise ConfigError(message("config.not_bool", name="hard_memory_limit", value=self.hard_memory_limit))
        if self.hard_memory_limit and (self.isolation != "process" or not self.memory_limit):
            raise ConfigError(message("config.hard_memory_limit"))
        object.__setattr__(self, "model_path", check_model_fields(self))
        object.__setattr__(self, "rpc_workers", tuple(self.rpc_workers))
        _int_field("port", self.port, minimum=0, maximum=65535)
        _int_field("memory_limit", self.memory_limit, minimum=1, optional=True)
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(message("config.host", value=self.host))
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ConfigError(message("config.api_key"))
        _int_field("max_request_bytes", self.max_request_bytes, minimum=1)
        if not isinstance(self.allow_unauthenticated_remote, bool):
            raise ConfigError(message("config.not_bool", name="allow_unauthenticated_remote",
                                      value=self.allow_unauthenticated_remote))
        if not is_loopback(self.host) and self.api_key is None and not self.allow_unauthenticated_remote:
            raise ConfigError(message("config.remote_without_api_key", host=self.host))
        if isinstance(self.extra_args, (str, bytes)) or not isinstance(self.extra_args, Sequence):
            raise ConfigError(message("config.not_string_sequence", name="extra_args"))
        extra = tuple(self.extra_args)
        for arg in extra:
            if not isinstance(arg, str):
                raise ConfigError(message("config.not_strings_only", name="extra_args", value=arg))
            flag = flag_name(arg)
            if flag in _FIELD_FLAGS:
                raise ConfigError(message("config.extra_arg_is_field", arg=arg, config="ServerConfig",
                                          field=_FIELD_FLAGS[flag]))
        object.__setattr__(self, "extra_args", extra)
        check_speculation(self.speculation, extra)
        split_process_flags(extra)  # refuses process-wide flags before llama.cpp's handlers see them
        from ._native import core  # late: keeps `import llamaproc.config` light for tooling

        core.validate_server_args(self.to_argv())

    def to_argv(self) -> list[str]:
        """The llama-server flags for this configuration (no program name), as llama.cpp parses
        them: without the verbosity flags, which :attr:`log_level` carries."""
        front = ["--host", self.host, "--port", str(self.port)]
        if self.api_key is not None:
            front += ["--api-key", self.api_key]
        return model_argv(self, front) + split_process_flags(self.extra_args)[0]

    @property
    def log_level(self) -> int | None:
        """The ``logging`` level that ``-v``/``-lv N`` in ``extra_args`` ask for (None without
        them); starting the server makes the ``llamaproc`` logger at least that verbose."""
        return split_process_flags(self.extra_args)[1]

    def replace(self, **changes: object) -> ServerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
