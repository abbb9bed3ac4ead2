"""Build llamaproc with the CUDA backend and check it, as one script (not part of the default
test run: the CUDA build takes about 30 minutes on 2 cores; see docs/builds.md).

    python scripts/check_cuda_build.py [--arch 90-real] [--build-dir build/cuda] [--keep]

1. builds a wheel with ``GGML_CUDA=ON`` (``GGML_CUDA_NO_VMM=ON`` when there is no driver library
   to link) into ``--build-dir`` (incremental on a second run);
2. installs it into a fresh virtual environment with the test dependencies;
3. smoke test: the CUDA backend is registered, a tiny generated model serves a completion with
   every layer offloaded (``-ngl 99``), and a machine without a GPU falls back to the CPU with
   the warning line;
4. on a machine with an NVIDIA GPU, also: the test suite against the CUDA build, and decode
   tok/s of SmolLM2 with all layers on the GPU next to the CPU, in the same run.

Exit status 0 when every step that applies passed. Loopback only; nothing is downloaded but
the packages pip installs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from wheel_env import ROOT, build_wheel, finish, install_in_fresh_env, run

SMOKE = r"""
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
from llamaproc._native import core
from llamaproc import LlamaServer, ServerConfig
from llamaproc.testing import make_tiny_model
info = core.system_info()
backends = [b["name"] for b in info["backends"]]
gpus = [d["name"] for d in info["devices"] if d["type"] != "cpu"]
print("backends", backends, "gpu devices", gpus)
assert "CUDA" in backends, "the CUDA backend is not in this build"
model = make_tiny_model(sys.argv[1])
with LlamaServer.start(ServerConfig(model_path=model, context_size=256, threads=1, gpu_layers=99)) as server:
    reply = server.direct.completions.create(prompt="hi", max_tokens=4, ignore_eos=True)
    assert reply["usage"]["completion_tokens"] == 4
    devices = server.metrics().devices
    print("devices", devices)
    assert (devices is not None) == bool(gpus), "device metrics must match the devices present"
print("SMOKE OK", "gpu" if gpus else "cpu fallback")
"""

DECODE = r"""
import sys, time
from llamaproc import LlamaServer, ServerConfig
from llamaproc.default_model import fetch_model
model = fetch_model(quiet=True)
for ngl in (0, 99):
    with LlamaServer.start(ServerConfig(model_path=model, context_size=2048, parallel=1, gpu_layers=ngl)) as s:
        s.direct.completions.create(prompt="warm up", max_tokens=8)
        t = time.perf_counter()
        r = s.direct.completions.create(prompt="Once upon a time", max_tokens=256, ignore_eos=True)
        dt = time.perf_counter() - t
        print(f"decode ngl={ngl}: {r['usage']['completion_tokens'] / dt:.1f} tok/s")
"""


def cuda_lib_dirs() -> list[str]:
    home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    return [d for d in (f"{home}/lib64", f"{home}/lib", f"{home}/targets/x86_64-linux/lib") if os.path.isdir(d)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90-real", help="CMAKE_CUDA_ARCHITECTURES (default: 90-real, H100/H200)")
    parser.add_argument("--build-dir", default="build/cuda")
    parser.add_argument("--keep", action="store_true", help="keep the virtual environment")
    args = parser.parse_args()
    has_driver = os.path.exists("/proc/driver/nvidia/version")
    work = Path(tempfile.mkdtemp(prefix="llamaproc-cuda-"))
    defines = [f"-Ccmake.define.GGML_CUDA=ON", f"-Ccmake.define.CMAKE_CUDA_ARCHITECTURES={args.arch}",
               f"-Cbuild-dir={args.build_dir}"]
    if not has_driver:
        defines.append("-Ccmake.define.GGML_CUDA_NO_VMM=ON")  # nothing to link libcuda against
    wheel = build_wheel(defines, work / "wheel")
    if wheel is None:
        return 1
    py = install_in_fresh_env(wheel, work / "venv")
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(cuda_lib_dirs() + [os.environ.get("LD_LIBRARY_PATH", "")])}
    smoke = run([py, "-c", SMOKE, str(work / "tiny.gguf")], env=env, cwd=work)
    ok = smoke.returncode == 0
    if ok and has_driver:
        ok = run([py, "-m", "pytest", "-q", "-x", str(ROOT / "tests")], env=env, cwd=ROOT).returncode == 0
        ok = run([py, "-c", DECODE], env=env, cwd=work).returncode == 0 and ok
    return finish("CUDA CHECK", ok, work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
