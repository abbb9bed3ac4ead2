"""Building llamaproc's native extension for this machine, before the extension exists.

Pure Python on the standard library: nothing here imports ``llamaproc._core``, so this runs
from a source checkout (``PYTHONPATH=src python -m llamaproc.build``) before anything is built.

    from llamaproc.build import detect, BuildConfig

    machine = detect()                       # CPU features, GPUs, toolkits, compilers, pitfalls
    config = BuildConfig.for_machine(machine)
    config.cmake_defines()                   # {"CMAKE_BUILD_TYPE": "Release", "GGML_NATIVE": "ON", ...}
    config.pip_install_command()             # [python, "-m", "pip", "install", ...]

``python -m llamaproc build-config [--json]`` prints the same, with a reason per choice.
"""

from __future__ import annotations

from .config import Backend, BuildConfig, CpuVariant, cpu_targets
from .machine import CpuInfo, Compiler, Gpu, Machine, Pitfall, Tool, Toolkit, Toolkits, detect

__all__ = ["detect", "Machine", "CpuInfo", "Gpu", "Tool", "Compiler", "Toolkit", "Toolkits", "Pitfall",
           "BuildConfig", "Backend", "CpuVariant", "cpu_targets"]
