"""-DLLAMAPROC_BACKENDS=auto: CMake asks llamaproc's own machine detection which GPU backends to
build, at configure time, and explicit defines still win. Checked on a minimal CMake project
that includes cmake/backends_auto.cmake as the real build does (configuring llama.cpp itself
would take minutes)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llamaproc.build import BuildConfig, detect

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake on PATH")


def _configure(tmp_path: Path, *defines: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\nproject(probe NONE)\n"
        f'set(LLAMAPROC_SOURCE_DIR "{ROOT.as_posix()}")\n'
        f'include("{(ROOT / "cmake" / "backends_auto.cmake").as_posix()}")\n'
        'foreach(_o GGML_CUDA GGML_HIP GGML_VULKAN GGML_OPENCL GGML_METAL CMAKE_CUDA_ARCHITECTURES)\n'
        '  message(STATUS "RESULT ${_o}=${${_o}}")\nendforeach()\n')
    return subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "b"),
                           f"-DPython_EXECUTABLE={sys.executable}", *defines],
                          capture_output=True, text=True, timeout=120)


def _results(out: str) -> dict[str, str]:
    return dict(re.findall(r"RESULT (\w+)=(.*)", out))


def test_auto_sets_the_backends_detection_chooses(tmp_path):
    r = _configure(tmp_path, "-DLLAMAPROC_BACKENDS=auto")
    assert r.returncode == 0, r.stderr
    expected = BuildConfig.for_machine(detect()).backend_defines()
    got = _results(r.stdout)
    for name, value in expected.items():
        assert got[name] == value, (name, got[name], value)
    assert "llamaproc auto: backends:" in r.stdout  # the reason is printed with the choice


def test_explicit_defines_win_over_auto(tmp_path):
    r = _configure(tmp_path, "-DLLAMAPROC_BACKENDS=auto", "-DGGML_CUDA=OFF", "-DGGML_VULKAN=ON")
    assert r.returncode == 0, r.stderr
    got = _results(r.stdout)
    assert got["GGML_CUDA"] == "OFF" and got["GGML_VULKAN"] == "ON"
    assert "GGML_CUDA=OFF as given" in r.stdout


def test_without_auto_nothing_is_chosen_and_a_wrong_value_is_refused(tmp_path):
    r = _configure(tmp_path)
    assert r.returncode == 0 and set(_results(r.stdout).values()) == {""}
    (tmp_path / "bad").mkdir()
    bad = _configure(tmp_path / "bad", "-DLLAMAPROC_BACKENDS=cuda")
    assert bad.returncode != 0 and "must be 'auto' or empty" in bad.stderr
