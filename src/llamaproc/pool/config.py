"""ModelSpec and PoolConfig: what a model pool serves, validated when they are made."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import (_FIELD_FLAGS, _int_field, check_isolation, check_model_fields, check_speculation, is_loopback,
                      model_argv)
from ..errors import ConfigError
from ..flags import flag_name, split_process_flags
from ..messages import message
from ..recovery import RestartPolicy


def _strings(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(message("config.not_string_sequence", name=name))
    out = tuple(value)
    for item in out:
        if not isinstance(item, str):
            raise ConfigError(message("config.not_strings_only", name=name, value=item))
    return out


def _seconds(name: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(message("pool.seconds", name=name, value=value))


_POOL_OWNED_FLAGS = {"--host", "--port", "--api-key", "--api-key-file", "--ssl-key-file", "--ssl-cert-file",
                     "--models-dir", "--models-preset", "--models-max", "--models-autoload", "--no-models-autoload"}


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model of a :class:`~llamaproc.pool.ModelPool`.

    The fields mean what they mean in :class:`~llamaproc.ServerConfig` (each maps to a
    llama-server flag); ``extra_args`` passes any other llama-server flag for this model.

    Attributes:
        model_path: Path of a local ``.gguf`` file. Replace a model's file by writing a new
            file and renaming it over the old one (or use :meth:`ModelPool.swap`): a loaded
            model maps its file, and rewriting it in place corrupts the weights in use.
        context_size: KV-cache size in tokens shared by the slots (``-c``).
        batch_size: Logical batch size (``-b``).
        threads: Decode threads (``-t``); None: one per physical core but one.
        gpu_layers: Layers to offload to a GPU (``-ngl``).
        parallel: Slots (``-np``), i.e. requests of this model decoded together.
        embeddings: Serve the embeddings endpoints.
        speculation: n-gram speculative decoding with llamaproc's adaptive draft length (False:
            ``--spec-type none``).
        rpc_workers: ``host:port`` of RPC workers to place layers on (``--rpc``).
        aliases: Other names requests may use for this model.
        tags: Informational labels, listed by ``GET /models``.
        pinned: Never unloaded to make room, nor when idle.
        load_on_startup: Load when the pool starts (``start()`` waits for it).
        stop_timeout: Seconds an :meth:`~ModelPool.unload` lets requests in flight finish
            before it ends them (llama-server's preset key ``stop-timeout``).
        restart: Reload the model when it fails after it served (None: the pool's
            ``PoolConfig.restart``).
        extra_args: Further llama-server flags for this model.
    """

    model_path: str | os.PathLike[str]
    context_size: int = 4096
    batch_size: int = 512
    threads: int | None = None
    gpu_layers: int | None = None
    parallel: int = 4
    embeddings: bool = False
    speculation: bool = True
    rpc_workers: Sequence[str] = ()
    aliases: Sequence[str] = ()
    tags: Sequence[str] = ()
    pinned: bool = False
    load_on_startup: bool = False
    stop_timeout: float = 10.0
    restart: RestartPolicy | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", check_model_fields(self))
        object.__setattr__(self, "rpc_workers", tuple(self.rpc_workers))
        for name in ("pinned", "load_on_startup"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(message("config.not_bool", name=name, value=getattr(self, name)))
        object.__setattr__(self, "aliases", _strings("aliases", self.aliases))
        object.__setattr__(self, "tags", _strings("tags", self.tags))
        _seconds("stop_timeout", self.stop_timeout, optional=False)
        if self.restart is not None and not isinstance(self.restart, RestartPolicy):
            raise ConfigError(message("config.restart", value=self.restart))
        extra = _strings("extra_args", self.extra_args)
        for arg in extra:
            flag = flag_name(arg)
            if flag in _POOL_OWNED_FLAGS:
                raise ConfigError(message("pool.flag_of_pool", arg=arg))
            if flag in _FIELD_FLAGS:
                raise ConfigError(message("config.extra_arg_is_field", arg=arg, config="ModelSpec",
                                          field=_FIELD_FLAGS[flag]))
        object.__setattr__(self, "extra_args", extra)
        check_speculation(self.speculation, extra)
        split_process_flags(extra)  # refuses process-wide flags (--numa, --prio, ...) with the reason

    def to_argv(self) -> list[str]:
        """The llama-server flags of this model (no program name)."""
        return model_argv(self) + split_process_flags(self.extra_args)[0]

    def native(self, name: str) -> dict[str, object]:
        """What the native pool takes for this model."""
        return native_model(name, self.to_argv(), aliases=self.aliases, tags=self.tags, pinned=self.pinned,
                            load_on_startup=self.load_on_startup, stop_timeout=self.stop_timeout)


def native_model(name: str, args: Sequence[str], *, aliases: Sequence[str] = (), tags: Sequence[str] = (),
                 pinned: bool = False, load_on_startup: bool = False, stop_timeout: float = 10.0) -> dict[str, object]:
    """The record the native pool takes for one model (``args``: its llama-server flags)."""
    return {"name": name, "args": list(args), "aliases": list(aliases), "tags": list(tags), "pinned": pinned,
            "load_on_startup": load_on_startup, "stop_timeout": float(stop_timeout)}


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """Configuration of a :class:`~llamaproc.pool.ModelPool`: its models, the room it may use,
    and its HTTP front.

    Models come from ``models`` and, as in llama-server's router mode, from ``models_dir``
    (each ``*.gguf`` file, or sub-folder with its shards and mmproj, is a model named after it)
    and ``models_preset`` (an INI file: a ``[name]`` section per model, keys are llama-server
    flags without dashes, ``[*]`` applies to every model).

    Attributes:
        models: Models by name.
        models_dir: A folder of GGUF models (``--models-dir``).
        models_preset: An INI preset file (``--models-preset``).
        max_loaded: Models loaded at once (``--models-max``); 0 means no limit.
        memory_budget: Bytes the loaded models may hold together (weights, KV cache, compute
            buffers and prompt cache), judged before each load by what an earlier load of the
            same file and flags held, else by llama.cpp's dry-run estimate
            (:mod:`llamaproc.memory`). Idle models are unloaded, least recently used first, to
            make room; a model that can never fit raises
            :class:`~llamaproc.errors.ResourceError` from :meth:`ModelPool.load`, and requests
            for it are answered 503. None: no byte budget.
        idle_unload_s: Unload a model nobody used for this many seconds (frees its room).
        autoload: Load a model when a request names it (``--models-autoload``); without it,
            requests for an unloaded model get HTTP 400 until :meth:`ModelPool.load`.
        default_model: Requests that name no model go to this one. None (the default) answers
            them with llama-server's HTTP 400 "model name is missing from the request".
        host, port, api_key, allow_unauthenticated_remote, max_request_bytes: The HTTP front,
            as in :class:`~llamaproc.ServerConfig`.
        extra_args: llama-server flags applied to every model (and the front's, such as
            ``--cors-origins`` or ``--timeout``); a model's own settings win over them.
        restart: Reload a model that fails after it served (see
            :class:`~llamaproc.RestartPolicy`); a ModelSpec's own ``restart`` wins.
        use_model_cache: Also serve the GGUF models in llama.cpp's local model cache
            (``LLAMA_CACHE``, else the Hugging Face hub cache), named ``repo:tag`` as
            llama-server's router lists them; read offline, nothing is downloaded.
        decode_gate: Models decoding at once share the CPUs: each decode step takes as many
            threads as it runs, first come first served, so two models run side by side while
            their threads fit the CPUs and take turns when they do not (two thread pools
            spinning on the same cores more than halve the throughput; docs/benchmarks.md).
            False lets every model decode whenever it wants.
        isolation: ``"none"`` (the default): the models run in this process. ``"process"``: the
            whole pool runs in one child process with the same API; a native crash fails its
            loaded models (each model's ``restart`` policy acts) and a new child takes the port.
    """

    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    models_dir: str | os.PathLike[str] | None = None
    models_preset: str | os.PathLike[str] | None = None
    max_loaded: int = 4
    memory_budget: int | None = None
    idle_unload_s: float | None = None
    autoload: bool = True
    default_model: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    allow_unauthenticated_remote: bool = False
    max_request_bytes: int = 32 * 2**20
    extra_args: Sequence[str] = field(default_factory=tuple)
    restart: RestartPolicy | None = None
    decode_gate: bool = True
    use_model_cache: bool = False
    isolation: str = "none"

    def __post_init__(self) -> None:
        check_isolation(self.isolation)
        if not isinstance(self.models, Mapping):
            raise ConfigError(message("pool.models_mapping"))
        models = dict(self.models)
        for name, spec in models.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(message("pool.model_name", name=name))
            if not isinstance(spec, ModelSpec):
                raise ConfigError(message("pool.model_spec", name=name, type=type(spec).__name__))
        object.__setattr__(self, "models", models)
        for name in ("models_dir", "models_preset"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, os.PathLike)) or not str(value):
                    raise ConfigError(message("pool.path_or_none", name=name, value=value))
                object.__setattr__(self, name, str(value))
        if self.models_dir is not None and not Path(self.models_dir).is_dir():
            raise ConfigError(message("pool.models_dir_missing", path=self.models_dir))
        if self.models_preset is not None:
            from .presets import check_preset_file

            check_preset_file(str(self.models_preset))
        _int_field("max_loaded", self.max_loaded, minimum=0)
        _int_field("memory_budget", self.memory_budget, minimum=1, optional=True)
        _seconds("idle_unload_s", self.idle_unload_s)
        if self.idle_unload_s is not None and self.idle_unload_s <= 0:
            raise ConfigError(message("pool.idle_unload", value=self.idle_unload_s))
        if not isinstance(self.use_model_cache, bool):
            raise ConfigError(message("config.not_bool", name="use_model_cache", value=self.use_model_cache))
        if not isinstance(self.decode_gate, bool):
            raise ConfigError(message("config.not_bool", name="decode_gate", value=self.decode_gate))
        if not isinstance(self.autoload, bool):
            raise ConfigError(message("config.not_bool", name="autoload", value=self.autoload))
        if self.default_model is not None and (not isinstance(self.default_model, str) or not self.default_model):
            raise ConfigError(message("pool.default_model_type", value=self.default_model))
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(message("config.host", value=self.host))
        _int_field("port", self.port, minimum=0, maximum=65535)
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ConfigError(message("config.api_key"))
        _int_field("max_request_bytes", self.max_request_bytes, minimum=1)
        if not is_loopback(self.host) and self.api_key is None and not self.allow_unauthenticated_remote:
            raise ConfigError(message("pool.remote_without_api_key", host=self.host))
        extra = _strings("extra_args", self.extra_args)
        for arg in extra:
            flag = flag_name(arg)
            if flag in _POOL_OWNED_FLAGS or flag in ("-m", "--model"):
                raise ConfigError(message("pool.extra_arg_is_field", arg=arg))
        split_process_flags(extra)
        object.__setattr__(self, "extra_args", extra)
        if self.restart is not None and not isinstance(self.restart, RestartPolicy):
            raise ConfigError(message("config.restart", value=self.restart))
        if not models and self.models_dir is None and self.models_preset is None and not self.use_model_cache:
            raise ConfigError(message("pool.no_models"))
        if self.default_model is not None and self.models_dir is None and self.models_preset is None:
            names = set(models) | {a for spec in models.values() for a in spec.aliases}
            if self.default_model not in names:
                raise ConfigError(message("pool.default_model_unknown", name=self.default_model))

    def router_argv(self) -> list[str]:
        """The router-level llama-server flags of this pool (no model)."""
        argv = ["--host", self.host, "--port", str(self.port), "--models-max", str(self.max_loaded)]
        if not self.autoload:
            argv.append("--no-models-autoload")
        if self.models_dir is not None:
            argv += ["--models-dir", str(self.models_dir)]
        if self.models_preset is not None:
            argv += ["--models-preset", str(self.models_preset)]
        if self.api_key is not None:
            argv += ["--api-key", self.api_key]
        return argv + split_process_flags(self.extra_args)[0]
