"""``python -m llamaproc build-config`` (also ``python -m llamaproc.build``): this machine's build;
``python -m llamaproc build``: build and install it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ..errors import ConfigError
from .config import BUILD_TYPES, Backend, BuildConfig
from .machine import Machine, detect


def machine_summary(machine: Machine) -> str:
    cpu = machine.cpu
    cores = f"{cpu.physical_cores} cores" if cpu.physical_cores else "cores unknown"
    if cpu.logical_cpus and cpu.logical_cpus != cpu.physical_cores:
        cores += f" ({cpu.logical_cpus} threads)"
    gpus = ", ".join(g.name for g in machine.gpus) or "no GPU seen"
    cxx = f"{machine.cxx.name} = {machine.cxx.family} {machine.cxx.version}" if machine.cxx else "no C++ compiler"
    tools = ", ".join(f"{t.name} {t.version or '?'}" if t.present else f"{t.name} absent"
                      for t in (machine.cmake, machine.ninja))
    lines = [f"machine: {machine.system} {cpu.arch}, {cpu.model or 'unknown CPU'}, {cores}",
             f"  cpu features: {' '.join(cpu.features) if cpu.features_known else 'unknown'} ({cpu.source})",
             f"  gpus: {gpus}",
             f"  toolchain: {cxx}; {tools}"]
    for pitfall in machine.pitfalls:
        lines.append(f"  pitfall ({'handled' if pitfall.handled else 'open'}): {pitfall.message}")
    for problem in machine.problems:
        lines.append(f"  probe failed: {problem}")
    return "\n".join(lines)


def _add_choices(parser: argparse.ArgumentParser) -> None:
    """The options of both commands that change the configuration."""
    parser.add_argument("--backend", action="append", choices=[b.value for b in Backend], metavar="NAME",
                        help="GPU backend to build instead of the detected choice (repeatable): "
                             + ", ".join(b.value for b in Backend))
    parser.add_argument("--portable", action="store_true",
                        help="every CPU instruction-set level, the best loaded at run time (runs on any CPU)")
    parser.add_argument("--target", help="one fixed CPU level instead: a ggml CPU variant name (haswell, skylakex, ...)")
    parser.add_argument("--build-type", default="Release", choices=list(BUILD_TYPES))


def _config_for(machine: Machine, args: argparse.Namespace) -> BuildConfig:
    return BuildConfig.for_machine(machine, backends=args.backend, portable=args.portable, target=args.target,
                                   build_type=args.build_type)


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``build-config`` (this module's own command line and ``python -m llamaproc``'s)."""
    parser.add_argument("--json", action="store_true", help="machine and configuration as JSON")
    _add_choices(parser)
    parser.add_argument("--cmake-auto", action="store_true",
                        help="print the backend defines as NAME=VALUE lines (what -DLLAMAPROC_BACKENDS=auto uses; "
                             "the reasons go to stderr)")
    return parser


def show_config(args: argparse.Namespace) -> int:
    """Detect this machine and print the build configuration that fits it: backends, CPU variant,
    instruction sets, CMake defines and the pip install command, with a reason for each choice.
    Needs no built extension."""
    machine = detect()
    try:
        config = _config_for(machine, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.cmake_auto:
        for name, value in config.backend_defines().items():
            print(f"{name}={value.replace(';', ',')}")  # one line each: CMake lists travel with commas
        for key in ("backends", *(b.value for b in Backend if b is not Backend.CPU)):
            if key in config.reasons:
                print(f"{key}: {config.reasons[key]}", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps({"machine": machine.to_dict(), "config": config.to_dict()}, indent=2))
    else:
        print(machine_summary(machine))
        print()
        print(config.describe())
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m llamaproc build-config") -> int:
    """``python -m llamaproc.build``: the same as ``python -m llamaproc build-config``."""
    parser = argparse.ArgumentParser(prog=prog, description=show_config.__doc__)
    return show_config(add_config_arguments(parser).parse_args(argv))


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``python -m llamaproc build``."""
    _add_choices(parser)
    parser.add_argument("--source", default=".", help="the llamaproc source tree (default: .)")
    parser.add_argument("--editable", action="store_true", help="the developer install (pip -e, no build isolation)")
    parser.add_argument("--log", help="where to write the build's output (default: a temporary file)")
    parser.add_argument("--dry-run", action="store_true", help="print the configuration and the command only")
    return parser


def build(args: argparse.Namespace) -> int:
    """Build and install llamaproc for this machine; failures are reported as one typed error
    (what failed, what to install, where the full log is)."""
    from ..errors import BuildError
    from .run import run_build

    machine = detect()
    try:
        config = _config_for(machine, args)
        print(config.describe())
        if args.dry_run:
            print(config.pip_install_line(args.source, editable=args.editable))
            return 0
        log = run_build(config, source=args.source, machine=machine, editable=args.editable, log_path=args.log)
    except (BuildError, ConfigError) as exc:
        print(f"error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 2
    print(f"built and installed; the build's output is in {log}")
    return 0
