"""The installed package is typed: _core ships a stub next to the extension, and a type checker
accepts ordinary use of the public API."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import llamaproc
from llamaproc import _core


def _stub() -> Path:
    return Path(_core.__file__).with_name("_core.pyi")


def test_core_stub_is_installed_next_to_the_extension():
    stub = _stub()
    assert Path(_core.__file__).name.startswith("_core") and Path(_core.__file__).suffix in (".so", ".pyd")
    assert stub.is_file(), f"no _core.pyi beside {_core.__file__}"
    text = stub.read_text()
    tree = ast.parse(text)  # valid Python syntax
    assert "class EmbeddedServer" in text
    assert "def quantize(" in text
    assert "class QuantType(enum.Enum)" in text and "NVFP4 = 39" in text
    assert "def parse(value: str | QuantType | int) -> QuantType" in text
    # the stub describes this build: every public name of the module is declared in it
    declared = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    declared |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)}
    public = {name for name in dir(_core) if not name.startswith("_")}
    assert public <= declared, f"missing from _core.pyi: {sorted(public - declared)}"


@pytest.mark.slow  # mypy --strict: a few seconds
def test_mypy_strict_accepts_ordinary_use(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed")
    # a source tree mypy can read: the package as imported (an editable install maps it through
    # an import hook that mypy does not follow) with the installed stub beside it
    shutil.copytree(Path(llamaproc.__file__).parent, tmp_path / "llamaproc",
                    ignore=shutil.ignore_patterns("__pycache__", "_core*.so", "_core*.pyd"))
    shutil.copy(_stub(), tmp_path / "llamaproc" / "_core.pyi")
    (tmp_path / "use.py").write_text(textwrap.dedent("""\
        from pathlib import Path

        from llamaproc import Evaluator, QuantType, inspect_model, quantize
        from llamaproc import _core


        def run(model: Path) -> float:
            qt: QuantType = QuantType.parse("q4_k_m")
            assert qt is QuantType.Q4_K_M and not QuantType.NVFP4.needs_imatrix
            result = quantize(model, model.with_suffix(".q4.gguf"), qt)
            kind: str | None = inspect_model(result.destination).file_type
            with Evaluator(model, context_size=64) as ev:
                lp = ev.logprobs(ev.tokenize("hello"))
            server: type[_core.EmbeddedServer] = _core.EmbeddedServer
            return float(lp.sum()) + len(kind or "") + len(server.__name__)
        """))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
                        "use.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_mypy_strict_accepts_the_package_itself(tmp_path):
    """`mypy --strict` on llamaproc's own code (pyproject's [tool.mypy]: strict, with the one
    listed exception), read with the built _core stub."""
    pytest.importorskip("mypy", reason="mypy is not installed")
    shutil.copytree(Path(llamaproc.__file__).parent, tmp_path / "llamaproc",
                    ignore=shutil.ignore_patterns("__pycache__", "_core*.so", "_core*.pyd"))
    shutil.copy(_stub(), tmp_path / "llamaproc" / "_core.pyi")
    config = Path(__file__).resolve().parent.parent / "pyproject.toml"
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental", "llamaproc"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
