"""Shared steps of the build-check scripts: build a wheel with some CMake defines, install it
into a fresh virtual environment with the test dependencies."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(list(cmd), text=True, **kw)  # type: ignore[call-overload]


def build_wheel(settings: Sequence[str], out: Path) -> Path | None:
    """``pip wheel`` of this checkout with ``-C`` settings into ``out``; the wheel, or None if it failed."""
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), *settings, str(ROOT)]
    if importlib.util.find_spec("scikit_build_core") and importlib.util.find_spec("nanobind"):
        cmd.insert(4, "--no-build-isolation")  # else pip fetches them into an isolated build environment
    built = run(cmd, cwd=ROOT)
    print(f"build: exit {built.returncode} after {time.monotonic() - started:.0f} s", flush=True)
    if built.returncode != 0:
        return None
    return max(out.glob("llamaproc-*.whl"), key=lambda p: p.stat().st_mtime)


def install_in_fresh_env(wheel: Path, venv: Path) -> str:
    """The interpreter of ``venv`` (made if missing) with ``wheel`` installed; fails loudly if
    that interpreter would import another llamaproc."""
    if not venv.exists():
        # not --system-site-packages: an editable install of llamaproc there (the dev loop) is an
        # import hook that would win over the wheel
        run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    # what the tests need (from pip's cache after the first time)
    run([py, "-m", "pip", "install", "-q", "numpy", "pytest", "hypothesis", "gguf", "openai"], check=True)
    where = run([py, "-c", "import llamaproc, sys; sys.stdout.write(llamaproc.__file__)"], capture_output=True,
                cwd=venv)
    if not where.stdout.startswith(str(venv)):
        raise SystemExit(f"{venv} imports another llamaproc ({where.stdout}): {where.stderr}")
    return py


def finish(label: str, ok: bool, work: Path, keep: bool) -> int:
    """Remove the work folder unless kept, print the verdict, return the exit status."""
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    print(label, "PASSED" if ok else "FAILED")
    return 0 if ok else 1
