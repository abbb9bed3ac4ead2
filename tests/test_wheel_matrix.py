"""The wheel matrix (pyproject's [tool.cibuildwheel]) parses and names the builds it promises:
CPython 3.10-3.13 on Linux x86_64/aarch64, macOS arm64 (Metal)/x86_64 and Windows AMD64, each
built for its whole architecture (no -march=native). The builds themselves run on those runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("cp310", "cp311", "cp312", "cp313")


def _identifiers(platform: str) -> set[str]:
    exe = shutil.which("cibuildwheel") or str(Path(sys.executable).with_name("cibuildwheel"))
    if not Path(exe).exists():
        pytest.skip("cibuildwheel is not installed (pip install '.[test]' installs it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}  # the file alone decides
    r = subprocess.run([exe, "--print-build-identifiers", "--platform", platform], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


@pytest.mark.parametrize("platform, tags", [
    ("linux", ("manylinux_x86_64", "manylinux_aarch64")),
    ("macos", ("macosx_arm64", "macosx_x86_64")),
    ("windows", ("win_amd64",)),
])
def test_the_matrix_lists_every_python_on_every_runner(platform, tags):
    assert _identifiers(platform) == {f"{py}-{tag}" for py in PYTHONS for tag in tags}


def test_wheels_are_built_for_their_whole_architecture():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert config["config-settings"]["cmake.define.GGML_NATIVE"] == "OFF"
    # Linux wheels carry every CPU level and load the best at import (the portable build)
    assert config["linux"]["config-settings"]["cmake.define.LLAMAPROC_PORTABLE"] == "ON"
    assert config["linux"]["config-settings"]["cmake.define.GGML_NATIVE"] == "OFF"
    assert config["macos"]["config-settings"]["cmake.define.GGML_METAL"] == "ON"
    x86_mac = next(o for o in config["overrides"] if o["select"] == "*-macosx_x86_64")
    assert x86_mac["config-settings"]["cmake.define.GGML_METAL"] == "OFF"
    assert "fetch_llama_cpp.py" in config["before-build"]  # the sdist-less checkout gets its source
