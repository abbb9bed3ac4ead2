"""Building the extension with a :class:`BuildConfig`, and failures as typed errors.

    from llamaproc.build import BuildConfig, detect
    from llamaproc.build.run import run_build

    log = run_build(BuildConfig.for_machine(detect()), source=".")   # raises a BuildError subclass

Before anything runs, :func:`preflight` checks the configuration against the machine
(``DependencyMissingError``: a toolkit or compiler is missing, with what to install;
``BuildConfigurationError``: the configuration contradicts the machine;
``UnsupportedPlatformError``). A failed build's output goes to a log file and is read by
:func:`classify_build_log`, so the error names the first compiler error or the missing piece
instead of a wall of CMake output. Standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import (BuildConfigurationError, BuildError, CompilationError, DependencyMissingError,
                      UnsupportedPlatformError)
from .config import Backend, BuildConfig
from .machine import Machine

SUPPORTED_SYSTEMS = ("Linux", "Darwin", "Windows")

_INSTALL = {
    Backend.CUDA: ("the CUDA toolkit (nvcc)", "install NVIDIA's CUDA toolkit and put nvcc on PATH (or set CUDACXX)"),
    Backend.ROCM: ("ROCm (hipcc)", "install ROCm >= 6 (/opt/rocm) or set ROCM_PATH"),
    Backend.VULKAN: ("the Vulkan SDK (headers, loader, glslc, SPIRV-Headers)",
                     "apt-get install libvulkan-dev glslc spirv-headers (or the LunarG SDK)"),
    Backend.OPENCL: ("OpenCL headers and the ICD loader", "apt-get install opencl-headers ocl-icd-opencl-dev"),
    Backend.METAL: ("Metal (macOS)", "build on macOS"),
}

# (pattern in a failed build's output, what is missing, how to install it)
_MISSING = [
    (r"No CMAKE_CUDA_COMPILER could be found|Could NOT find CUDAToolkit|nvcc: (command )?not found",
     "the CUDA toolkit (nvcc)", _INSTALL[Backend.CUDA][1]),
    # a toolkit with nvcc and the runtime but without cuBLAS (seen with CUDA 13.0 installs)
    (r"links to:\s+CUDA::cublas\S*\s+but the target was not found", "cuBLAS (the CUDA toolkit's BLAS library)",
     "install your CUDA version's cuBLAS development files (NVIDIA's apt repository: libcublas-dev-<version>), or "
     "put the headers and libraries of the nvidia-cublas package into the toolkit's include/ and lib/"),
    (r"Could NOT find Vulkan|glslc.*not found|Could not find glslc|Could NOT find SPIRV-Headers",
     "the Vulkan SDK", _INSTALL[Backend.VULKAN][1]),
    (r"Could NOT find OpenCL|CL/cl\.h: No such file", "OpenCL headers and loader", _INSTALL[Backend.OPENCL][1]),
    (r"Could NOT find hip|hipcc.*not found|Could not find a package configuration file provided by \"hip\"",
     "ROCm (hipcc)", _INSTALL[Backend.ROCM][1]),
    (r"is not able to compile a simple test program|No CMAKE_CXX_COMPILER could be found|"
     r"No CMAKE_C_COMPILER could be found|CMAKE_CXX_COMPILER.*is not a full path to an existing compiler",
     "a working C/C++ compiler", "apt-get install build-essential (or set CC/CXX to a working compiler)"),
    (r"Could not find a package configuration file provided by \"nanobind\"|No module named 'nanobind'",
     "nanobind", "pip install nanobind (or build with build isolation)"),
    (r"No module named 'scikit_build_core'|scikit-build-core.*not found", "scikit-build-core",
     "pip install scikit-build-core"),
    (r"llama\.cpp source not found", "the llama.cpp source", "python scripts/fetch_llama_cpp.py"),
    (r"(cmake|CMake).*(not found|No such file)|Could not find cmake", "CMake", "pip install cmake"),
]
_COMPILER_ERROR = re.compile(r"^.*\b(?:fatal )?error\b[: ].*$|^.*: error [A-Z]+\d+:.*$", re.M)


def preflight(config: BuildConfig, machine: Machine) -> None:
    """Refuse a build that cannot work on ``machine``, before spending minutes on it."""
    if machine.system not in SUPPORTED_SYSTEMS:
        raise UnsupportedPlatformError(f"llamaproc builds on {', '.join(SUPPORTED_SYSTEMS)}; this is {machine.system}")
    if Backend.METAL in config.backends and machine.system != "Darwin":
        raise BuildConfigurationError(f"the Metal backend needs macOS; this is {machine.system}. "
                                      "Hint: leave out --backend metal")
    for backend in config.backends:
        if backend is Backend.CPU or backend is Backend.METAL:
            continue
        toolkit = getattr(machine.toolkits, backend.value)
        if not toolkit.buildable:
            what, hint = _INSTALL[backend]
            raise DependencyMissingError(f"the {backend.value} backend needs {what}: {toolkit.summary}. Hint: {hint}",
                                         missing=what, install_hint=hint)
    if machine.cxx is None:
        hint = "apt-get install build-essential (or set CXX)"
        raise DependencyMissingError(f"no C++ compiler found. Hint: {hint}", missing="a C++ compiler", install_hint=hint)


def classify_build_log(text: str, log_path: str | None = None) -> BuildError:
    """The typed error for a failed build's output."""
    where = f" (full output: {log_path})" if log_path else ""
    for pattern, missing, hint in _MISSING:
        if re.search(pattern, text):
            return DependencyMissingError(f"the build needs {missing}{where}. Hint: {hint}", missing=missing,
                                          install_hint=hint, log_path=log_path)
    match = _COMPILER_ERROR.search(text)
    if match:
        first = match.group(0).strip()
        return CompilationError(f"compilation failed: {first}{where}", first_error=first, log_path=log_path)
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
    return BuildError(f"the build failed: {tail}{where}")


def run_build(config: BuildConfig, *, source: str | os.PathLike[str] = ".", machine: Machine | None = None,
              python: str | None = None, editable: bool = False, log_path: str | os.PathLike[str] | None = None,
              env: dict[str, str] | None = None) -> Path:
    """Install llamaproc from ``source`` with ``config``; returns the log's path, raises a
    typed :class:`BuildError` (see the module docstring) on failure."""
    from .machine import detect

    preflight(config, machine or detect())
    log = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="llamaproc-build-")) / "build.log"
    command = config.pip_install_command(str(source), python=python or sys.executable, editable=editable)
    with log.open("w") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if rc != 0:
        raise classify_build_log(log.read_text(errors="replace"), str(log))
    return log


__all__ = ["preflight", "classify_build_log", "run_build", "SUPPORTED_SYSTEMS"]
