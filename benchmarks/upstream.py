"""Build upstream llama.cpp's own ``llama-server`` and ``llama-bench`` from the vendored source,
the way its users build them (native CPU, OpenMP on, Release), changed only by the gcc-12 AMX
fix that this machine needs (forced include of cmake/ggml_amx_tilecfg_fix.h). The result lives
under build/ and is never committed. Used by the benchmarks as the baseline.

    python benchmarks/upstream.py [--no-openmp]     # prints the bin folder
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "vendor" / "llama.cpp"
FIX = ROOT / "cmake" / "ggml_amx_tilecfg_fix.h"


# Everything -march=native enables on an AVX-512 + AMX CPU, minus AMX: to measure what AMX brings.
NO_AMX_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_AVX_VNNI=ON", "-DGGML_FMA=ON",
                "-DGGML_F16C=ON", "-DGGML_BMI2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VBMI=ON",
                "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON"]


def build_upstream(openmp: bool = True, amx: bool = True, jobs: int | None = None, log=sys.stderr) -> Path:
    """Build (or reuse) upstream llama-server and llama-bench; return their bin folder."""
    if not (SOURCE / "CMakeLists.txt").is_file():
        raise SystemExit("vendor/llama.cpp is missing: run `python scripts/fetch_llama_cpp.py`")
    build = ROOT / "build" / ("upstream" + ("" if openmp else "-noopenmp") + ("" if amx else "-noamx"))
    binaries = build / "bin"
    if (binaries / "llama-server").is_file() and (binaries / "llama-bench").is_file():
        return binaries
    env = dict(os.environ, CCACHE_BASEDIR=str(ROOT))
    configure = ["cmake", "-S", str(SOURCE), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                 f"-DGGML_OPENMP={'ON' if openmp else 'OFF'}", "-DLLAMA_BUILD_TESTS=OFF",
                 "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF",
                 f"-DCMAKE_CXX_FLAGS=-include {FIX}", "-DLLAMA_BUILD_COMMIT=0c1e57098"]
    if not amx:
        configure += NO_AMX_FLAGS
    if shutil.which("ccache"):
        configure += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    subprocess.run(configure, check=True, env=env, stdout=log, stderr=log)
    cmd = ["cmake", "--build", str(build), "--target", "llama-server", "llama-bench"]
    if jobs:
        cmd += ["-j", str(jobs)]
    subprocess.run(cmd, check=True, env=env, stdout=log, stderr=log)
    return binaries


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-openmp", action="store_true", help="build with GGML_OPENMP=OFF instead")
    parser.add_argument("--no-amx", action="store_true", help="AVX-512 without AMX (for comparison)")
    args = parser.parse_args()
    print(build_upstream(openmp=not args.no_openmp, amx=not args.no_amx))
