"""Building with a BuildConfig: preflight checks and build failures as typed errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llamaproc import errors
from llamaproc.build import BuildConfig, detect
from llamaproc.build.run import classify_build_log, preflight, run_build


def bare_machine(tmp_path: Path, system: str = "Linux"):
    """A machine with nothing installed: an empty root and an empty PATH."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    return detect(root=tmp_path, env={"PATH": str(tmp_path / "bin")}, system=system)


def test_preflight_names_what_is_missing_or_contradictory(tmp_path):
    machine = bare_machine(tmp_path)
    with pytest.raises(errors.DependencyMissingError) as info:
        preflight(BuildConfig.for_machine(machine, backends=["cuda"]), machine)
    assert "nvcc" in info.value.missing and "CUDA" in info.value.install_hint
    with pytest.raises(errors.BuildConfigurationError, match="needs macOS"):
        preflight(BuildConfig.for_machine(machine, backends=["metal"]), machine)
    with pytest.raises(errors.DependencyMissingError, match="no C\\+\\+ compiler"):
        preflight(BuildConfig.for_machine(machine), machine)
    plan9 = bare_machine(tmp_path, system="Plan9")
    with pytest.raises(errors.UnsupportedPlatformError):
        preflight(BuildConfig.for_machine(plan9), plan9)


@pytest.mark.parametrize("log, kind, detail", [
    ("[ 12%] Building CXX object x.cpp.o\n/src/cpp/core/a.cpp:12:3: error: 'foo' was not declared in this scope\n"
     "   12 |   foo();\nninja: build stopped", errors.CompilationError, "a.cpp:12:3: error: 'foo'"),
    ("CMake Error at CMakeLists.txt:3 (project):\n  No CMAKE_CUDA_COMPILER could be found.\n",
     errors.DependencyMissingError, "nvcc"),
    ("-- Could NOT find Vulkan (missing: glslc) (found version \"1.3\")", errors.DependencyMissingError, "Vulkan"),
    # what CMake printed for GGML_CUDA=ON with this machine's nvcc 13.0 toolkit, which has no cuBLAS
    ("CMake Error at vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt:178 (target_link_libraries):\n"
     "  Target \"ggml-cuda\" links to:\n\n    CUDA::cublas\n\n  but the target was not found.  Possible reasons",
     errors.DependencyMissingError, "cuBLAS"),
    ("CMake Error: llama.cpp source not found in /x: run `python scripts/fetch_llama_cpp.py`",
     errors.DependencyMissingError, "llama.cpp source"),
    ("something else went wrong\nat the very end", errors.BuildError, "at the very end"),
])
def test_build_logs_become_typed_errors(log, kind, detail):
    error = classify_build_log(log, "/tmp/build.log")
    assert type(error) is kind
    assert detail in str(error) and "/tmp/build.log" in str(error)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake on PATH")
def test_a_broken_compiler_is_reported_as_such(tmp_path):
    """Real CMake output: the compiler check fails, and the error says to install a working one."""
    (tmp_path / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.21)\nproject(probe CXX)\n")
    env = {**os.environ, "CXX": "/bin/false", "CC": "/bin/false"}
    r = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "b")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    error = classify_build_log(r.stdout + r.stderr)
    assert isinstance(error, errors.DependencyMissingError) and "compiler" in error.missing


def test_run_build_writes_the_log_and_raises_the_first_compiler_error(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text(textwrap.dedent("""\
        #!/bin/sh
        echo "[  3%] Building CXX object CMakeFiles/_core.dir/cpp/bindings/server.cpp.o"
        echo "/src/cpp/bindings/server.cpp:7:10: fatal error: nanobind/nanobind.h: No such file or directory"
        exit 1
        """))
    fake_python.chmod(0o755)
    machine = detect()
    config = BuildConfig.for_machine(machine, backends=[])
    log = tmp_path / "build.log"
    with pytest.raises(errors.CompilationError) as info:
        run_build(config, source=str(tmp_path), machine=machine, python=str(fake_python), log_path=log)
    assert "server.cpp:7:10: fatal error" in info.value.first_error
    assert info.value.log_path == str(log) and "nanobind.h" in log.read_text()
    assert log.read_text().startswith(f"$ {fake_python} -m pip install")


def test_build_cli_reports_a_typed_error_and_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "llamaproc", "build", "--backend", "metal"], capture_output=True,
                       text=True, timeout=60)
    if sys.platform == "darwin":
        pytest.skip("Metal is buildable here")
    assert r.returncode == 2
    assert "BuildConfigurationError" in r.stderr and "needs macOS" in r.stderr
    r = subprocess.run([sys.executable, "-m", "llamaproc", "build", "--dry-run"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "-m pip install" in r.stdout
