"""Every ```python snippet of README.md runs, as written, so the documentation cannot drift.

Snippets are read from the README itself and executed one by one (a test per snippet, named
after its section heading and its position there). Each runs in a fresh temporary working
directory where the model files it names exist: symlinks to the models the suite already
uses (``MODEL_FILES``), so the code text is what a user reads. A snippet that defines pytest
tests (``def test_...``) is run by pytest in a subprocess instead. While a snippet runs, Python
sockets may connect to loopback addresses only.

The ```bash blocks are not run; the ``python -m llamaproc COMMAND`` lines are checked: the
command exists and its ``--help`` names every ``--flag`` the README passes to it.
"""

from __future__ import annotations

import gc
import ipaddress
import re
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"

# Model files the snippets name -> what the test links them to in the snippet's working directory:
# "smollm2" (the real SmolLM2-135M-Instruct Q4_1, conftest's smollm2_model), "tiny" (conftest's
# tiny random-weight model) or "f16" (a tiny F16 model with 256-wide rows, so K-quants apply).
MODEL_FILES = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": "smollm2",  # the README's default model
    "chat.gguf": "smollm2",  # ModelPool
    "chat-v2.gguf": "smollm2",  # ModelPool.swap
    "embed.gguf": "tiny",  # ModelPool: a second model (loaded only on use)
    "model-f16.gguf": "f16",  # quantize() source
}

# Text replaced in a snippet before it runs: none is needed today. Keep it that way where
# possible (make the README snippet runnable instead); every entry must match README text.
SUBSTITUTIONS: dict[str, str] = {}

# Snippets that take about 3 s or more here (2 cores): also marked `slow`. The others take
# 0.1-1.5 s each (SmolLM2 loads in about 0.3 s).
SLOW = {
    "failure-and-recovery-1",  # two loads, a 0.5 s restart backoff
    "testing-your-app-1",  # a pytest subprocess (tests/test_pytest_plugin.py runs it too)
    "replicas-on-a-ray-cluster-ray-serve-1",  # a local Ray cluster starts (about 15 s)
}

SNIPPET_TIMEOUT_S = 180


@dataclass(frozen=True)
class Snippet:
    heading: str
    index: int  # 1-based, within its section
    line: int  # README line of the snippet's first code line
    code: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{slug}-{self.index}"

    def models(self) -> dict[str, str]:
        return {name: kind for name, kind in MODEL_FILES.items() if f'"{name}"' in self.code}


def code_blocks(text: str, language: str) -> list[Snippet]:
    """The fenced ```language blocks of a Markdown text, with the heading each one is under."""
    blocks: list[Snippet] = []
    heading, counts = "top", {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            lang = line[3:].strip()
            end = i + 1
            while not lines[end].startswith("```"):
                end += 1
            if lang == language:
                counts[heading] = counts.get(heading, 0) + 1
                blocks.append(Snippet(heading, counts[heading], i + 2, "\n".join(lines[i + 1:end]) + "\n"))
            i = end + 1
            continue
        if re.match(r"#{1,6} ", line):
            heading = line.lstrip("#").strip().replace("`", "")
        i += 1
    return blocks


SNIPPETS = code_blocks(README.read_text(encoding="utf-8"), "python")


def _param(snippet: Snippet):
    marks = []
    if "smollm2" in snippet.models().values():
        marks.append(pytest.mark.smollm2)
    if snippet.id in SLOW:
        marks.append(pytest.mark.slow)
    return pytest.param(snippet, id=snippet.id, marks=marks)


@pytest.fixture(scope="module")
def f16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llamaproc import quantize
    from llamaproc.testing import make_tiny_model

    folder = tmp_path_factory.mktemp("readme-f16")
    wide = make_tiny_model(folder / "wide.gguf", n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_layers=2, seed=3)
    return quantize(wide, folder / "f16.gguf", "F16").destination


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on in this test, Python sockets may connect to loopback addresses only (native
    code is not watched; the models are in place before this, fetched or not)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):  # type: ignore[index]
            raise AssertionError(f"a README snippet connected to {address}: snippets may reach 127.0.0.1 only")

    def connect(sock: socket.socket, address: object) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


class _SnippetTimeout(Exception):
    pass


def _run_with_timeout(code, namespace: dict, timeout_s: float) -> None:
    """exec() with a deadline: SIGALRM raises in the snippet (the `with` blocks it is in stop
    their servers); llamaproc's native waits return to Python in short slices."""
    if not hasattr(signal, "SIGALRM"):
        exec(code, namespace)  # noqa: S102 - running the README is the point
        return

    def expire(signum, frame):
        raise _SnippetTimeout(f"the snippet ran for more than {timeout_s:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        exec(code, namespace)  # noqa: S102 - running the README is the point
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("snippet", [_param(s) for s in SNIPPETS])
def test_readme_snippet_runs(snippet: Snippet, request: pytest.FixtureRequest, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    code = snippet.code
    for old, new in SUBSTITUTIONS.items():
        code = code.replace(old, new)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    fixture_of = {"smollm2": "smollm2_model", "tiny": "tiny_model", "f16": "f16_model"}
    for name, kind in snippet.models().items():
        (workdir / name).symlink_to(request.getfixturevalue(fixture_of[kind]))
    monkeypatch.chdir(workdir)
    loopback_only(monkeypatch)

    if re.search(r"^def test_", code, re.MULTILINE):  # a test module: pytest runs it
        pytester = request.getfixturevalue("pytester")
        pytester.makepyfile(test_readme_snippet=code)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error",
                                               "-W", "ignore::pytest.PytestAssertRewriteWarning",
                                               timeout=SNIPPET_TIMEOUT_S)
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed", 0) == len(re.findall(r"^def test_", code, re.MULTILINE)) and not (
            outcomes.get("failed") or outcomes.get("errors")), result.stdout.str()
        return

    # padded to the README's line numbers and compiled as README.md: tracebacks show README lines
    compiled = compile("\n" * (snippet.line - 1) + code, str(README), "exec")
    namespace: dict = {"__name__": "__main__"}
    try:
        _run_with_timeout(compiled, namespace, SNIPPET_TIMEOUT_S)
    finally:
        namespace.clear()  # streams and clients the snippet kept go away with it
        gc.collect()


# -- the test's own tables stay in step with the README --------------------------------------


def test_the_readme_has_python_snippets_and_the_tables_match_them():
    ids = [s.id for s in SNIPPETS]
    assert len(ids) >= 8 and len(set(ids)) == len(ids), ids
    assert SLOW <= set(ids), f"SLOW names snippets the README no longer has: {SLOW - set(ids)}"
    text = README.read_text(encoding="utf-8")
    assert all(old in text for old in SUBSTITUTIONS), "a SUBSTITUTIONS entry matches no README text"
    used = {name for s in SNIPPETS for name in s.models()}
    assert used == set(MODEL_FILES), f"MODEL_FILES names files no snippet uses: {set(MODEL_FILES) - used}"


def test_no_snippet_needs_a_fixed_port_or_a_remote_host():
    for s in SNIPPETS:
        assert not re.search(r"\bport\s*=\s*[1-9]", s.code), f"{s.id}: use port=0 (the default)"
        for url in re.findall(r"https?://[^\s\"')]+", s.code):
            assert re.match(r"https?://(127\.0\.0\.1|localhost)\b", url), f"{s.id}: {url}"


# -- the command lines of the ```bash blocks ----------------------------------------------------


def _cli_lines() -> list[tuple[str, list[str]]]:
    """(subcommand, --flags given to it) for every `python -m llamaproc SUB ...` line of a bash block."""
    found = []
    for block in code_blocks(README.read_text(encoding="utf-8"), "bash"):
        for line in block.code.splitlines():
            for part in line.split("&&"):
                m = re.search(r"python -m llamaproc ([a-z][a-z-]*)(.*)", part.split("  #")[0])
                if m:
                    found.append((m.group(1), re.findall(r"(?<![\w-])--[a-z][a-z-]*", m.group(2))))
    return found


def _help(sub: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What `python -m llamaproc SUB --help` prints (run in this process); fails if SUB does not exist."""
    from llamaproc.__main__ import main

    capsys.readouterr()
    try:
        status = main([sub, "--help"])
    except SystemExit as exc:
        status = exc.code
    out = capsys.readouterr()
    assert status in (0, None), f"README names `python -m llamaproc {sub}`, which does not exist: {out.err}"
    return out.out


def test_readme_command_lines_name_existing_commands_and_flags(capsys: pytest.CaptureFixture[str]):
    lines = _cli_lines()
    assert {sub for sub, _ in lines} >= {"serve", "info", "quantize", "inspect", "build-config", "rpc-worker"}
    inline = re.findall(r"python -m llamaproc ([a-z][a-z-]*)", README.read_text(encoding="utf-8"))
    helps = {sub: _help(sub, capsys) for sub in {*inline, *(sub for sub, _ in lines)}}
    for sub, flags in lines:
        missing = [f for f in flags if f != "--help" and not re.search(rf"(?<![\w-]){f}(?![\w-])", helps[sub])]
        assert not missing, f"`python -m llamaproc {sub} --help` does not mention {missing}"


def test_every_config_field_is_documented():
    import dataclasses

    from llamaproc.config import ServerConfig
    from llamaproc.pool.config import ModelSpec, PoolConfig

    text = README.read_text(encoding="utf-8")
    for cls in (ServerConfig, PoolConfig, ModelSpec):
        missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}`" not in text]
        assert not missing, f"README.md does not document {cls.__name__} fields {missing}"
