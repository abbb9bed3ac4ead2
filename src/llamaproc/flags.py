"""llama-server flags that act on the whole process: mapped to the Python logger, or refused.

Many embedded servers may share one Python process, so a llama-server flag whose handler
changes process-wide state cannot mean what it means for a separate llama-server:

- ``-v``/``--verbose``/``--log-verbose`` and ``-lv``/``--verbosity``/``--log-verbosity N``
  (and ``LLAMA_ARG_LOG_VERBOSITY`` where environment defaults apply) are mapped: they are
  removed from the flags llama.cpp parses (its threshold is one global) and, when the server
  starts, make the ``llamaproc`` logger at least that verbose.
- The log settings of llama.cpp's own printer (``--log-file``, ``--log-disable``,
  ``--log-colors``, ``--log-prefix``, ``--log-timestamps``, ``--log-jsonl``), which llamaproc
  replaces by the ``llamaproc`` logger, ``--log-prompts-dir`` (its handler creates directories
  while flags are merely parsed), ``--numa`` and ``--prio`` are refused with the reason.
- ``--rpc host:port,...`` is accepted: its workers serve this server only (llama.cpp would
  register them for every server in the process; see ``llamaproc.rpc``). The native parser refuses them too, with the same reasons, and refuses their
  ``LLAMA_ARG_*`` variables (cpp/core/argv_parser.cpp).

``--cpu-mask``, ``--cpu-range``, ``--cpu-strict``, ``--prio-batch`` and ``--poll`` stay
accepted: ggml applies them only to the threads of the server's own thread pools (and its
loop thread), not to the host's threads.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
from collections.abc import Sequence

from .errors import ConfigError
from .messages import message

VERBOSITY_ENV = "LLAMA_ARG_LOG_VERBOSITY"

_VERBOSE_FLAGS = frozenset({"-v", "--verbose", "--log-verbose"})
_VERBOSITY_FLAGS = frozenset({"-lv", "--verbosity", "--log-verbosity"})

_LOG_FORMAT = ("the native log goes to the 'llamaproc' Python logger, not to llama.cpp's process-wide printer; "
               "format it with a logging.Formatter instead")

# The same reasons as process_wide_options() in cpp/core/argv_parser.cpp (a test checks).
REFUSED_FLAGS: dict[str, str] = {
    "--log-file": "the native log goes to the 'llamaproc' Python logger; add a logging.FileHandler to it instead",
    "--log-disable": "the native log goes to the 'llamaproc' Python logger; raise that logger's level to silence it "
                     "instead",
    "--log-colors": _LOG_FORMAT,
    "--log-prefix": _LOG_FORMAT, "--no-log-prefix": _LOG_FORMAT,
    "--log-timestamps": _LOG_FORMAT, "--no-log-timestamps": _LOG_FORMAT,
    "--log-jsonl": _LOG_FORMAT, "--no-log-jsonl": _LOG_FORMAT,
    "--log-prompts-dir": "it creates directories as soon as the flags are parsed and writes every prompt to disk "
                         "(a llama-server debugging aid); log requests in your application instead",
    "--numa": "NUMA placement is a process-wide setting a library must not change for its host; "
              "set it on the Python process instead (numactl)",
    "--prio": "process priority is a process-wide setting a library must not change for its host; "
              "set it on the Python process instead (os.nice)",
}


def logging_level(verbosity: int) -> int:
    """The ``logging`` level for a llama.cpp verbosity threshold (LOG_LEVEL_* in common/log.h).

    5 (debug) and 4 (trace, which Python logging has no level for) give DEBUG, as does ``-v``
    (no limit); 3 (info) INFO; 2 (warn) WARNING; 1 (error) ERROR; 0 (tool output only) or
    less CRITICAL.
    """
    if verbosity >= 4:
        return logging.DEBUG
    return {3: logging.INFO, 2: logging.WARNING, 1: logging.ERROR}.get(verbosity, logging.CRITICAL)


@functools.cache
def _flag_values() -> dict[str, int]:
    from ._native import core  # late: keeps `import llamaproc.config` light for tooling

    values: dict[str, int] = getattr(core, "_server_flag_values")()  # private: not in the stub
    return dict(values)


def _verbosity(value: str, flag: str | None = None) -> int:
    """llama.cpp's verbosity number ``value``, given to ``flag`` (else by ``VERBOSITY_ENV``)."""
    try:
        return int(value)
    except ValueError:
        if flag is None:
            raise ConfigError(message("flags.bad_verbosity_env", variable=VERBOSITY_ENV, value=value)) from None
        raise ConfigError(message("flags.bad_verbosity", flag=flag, value=value)) from None


#: llama.cpp's verbosity for ``-v`` (its INT_MAX: everything).
VERBOSE_ALL = 2**31 - 1


def _split(argv: Sequence[str], use_env: bool) -> tuple[list[str], int | None]:
    """The flags llama.cpp parses, and llama.cpp's verbosity number the others give (the last
    ``-v`` / ``-lv N``, else with ``use_env`` ``LLAMA_ARG_LOG_VERBOSITY``; None without one)."""
    values = _flag_values()
    args = list(argv)
    kept: list[str] = []
    number: int | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        flag = arg.replace("_", "-") if arg.startswith("--") else arg  # as the native parser reads it
        if flag in REFUSED_FLAGS:
            raise ConfigError(message("flags.refused", flag=flag, reason=REFUSED_FLAGS[flag]))
        if flag in _VERBOSE_FLAGS:
            number = VERBOSE_ALL
            i += 1
        elif flag in _VERBOSITY_FLAGS:
            if i + 1 >= len(args):
                raise ConfigError(message("flags.missing_value", flag=flag))
            number = _verbosity(args[i + 1], flag)
            i += 2
        else:
            n = 1 + values.get(flag, 0)  # unknown flags: the native parser names them
            kept += args[i:i + n]
            i += n
    if number is None and use_env and os.environ.get(VERBOSITY_ENV, "") != "":
        number = _verbosity(os.environ[VERBOSITY_ENV])
    return kept, number


def split_process_flags(argv: Sequence[str], *, use_env: bool = False) -> tuple[list[str], int | None]:
    """Split llama-server flags into those llama.cpp parses and a ``logging`` level.

    Returns ``(argv_for_llama_cpp, level)``: the verbosity flags are removed and the last one
    gives ``level`` (None without one). With ``use_env`` (``LLAMA_ARG_*`` variables supply
    defaults) ``LLAMA_ARG_LOG_VERBOSITY`` gives the level when no flag does. Raises
    :class:`~llamaproc.errors.ConfigError` for a flag that acts on process-wide state.
    """
    kept, number = _split(argv, use_env)
    return kept, None if number is None else logging_level(number)


def llama_verbosity(argv: Sequence[str], *, use_env: bool = False) -> int | None:
    """llama.cpp's own verbosity number the flags give: ``-v`` everything (:data:`VERBOSE_ALL`),
    ``-lv N`` N, else (with ``use_env``) ``LLAMA_ARG_LOG_VERBOSITY``; None without one.

    :func:`split_process_flags` maps it to the ``llamaproc`` logger; the server also gets it,
    for what llama-server does with it beside logging: above 9 every completion response carries
    ``__verbose`` (the prompt as formatted, the sampling settings, ...), as with ``llama-server -v``.
    Raises like :func:`split_process_flags`.
    """
    return _split(argv, use_env)[1]


def apply_log_level(level: int | None) -> None:
    """Make the ``llamaproc`` logger at least as verbose as ``level`` (never less verbose)."""
    if level is None:
        return
    logger = logging.getLogger("llamaproc")
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)


def names_a_model(argv: Sequence[str], use_env: bool) -> bool:
    """Whether llama-server flags name a model (``-m``; with ``use_env`` also ``LLAMA_ARG_MODEL``),
    i.e. run one server rather than a pool."""
    return (any(a in ("-m", "--model") or a.startswith("--model=") for a in argv)
            or (use_env and bool(os.environ.get("LLAMA_ARG_MODEL"))))


class ServeMode(enum.Enum):
    """What a llama-server command line serves (:func:`serve_mode`)."""

    SERVER = "server"  #: the flags name a model: one LlamaServer
    POOL = "pool"  #: router flags (--models-dir, --models-preset, or router=True): a ModelPool
    NO_MODEL = "no_model"  #: neither: llama-server runs its router on the local model cache


def flag_name(arg: str) -> str:
    """The flag an argument names: ``--name`` of ``--name=value``; other arguments as they are."""
    return arg.split("=", 1)[0] if arg.startswith("--") else arg


def serve_mode(argv: Sequence[str], *, use_env: bool, router: bool = False) -> ServeMode:
    """The one place that decides between one server and a pool, for
    :func:`llamaproc.serve_from_args` and ``python -m llamaproc serve``. ``router`` forces a pool
    (and then ``LLAMA_ARG_MODEL`` does not count). :attr:`ServeMode.NO_MODEL` is llama-server's
    router mode on the local model cache; ``serve`` alone serves the default model instead."""
    if names_a_model(argv, use_env=use_env and not router):
        return ServeMode.SERVER
    asks_for_a_pool = (router or any(flag_name(a) in ("--models-dir", "--models-preset") for a in argv)
                       or (use_env and bool(os.environ.get("LLAMA_ARG_MODELS_DIR")
                                            or os.environ.get("LLAMA_ARG_MODELS_PRESET"))))
    return ServeMode.POOL if asks_for_a_pool else ServeMode.NO_MODEL


