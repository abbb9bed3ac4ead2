"""The message catalog (llamaproc.messages): every id used exists with the fields its text names,
every entry is used, errors are raised with catalog messages, and gettext really translates."""

from __future__ import annotations

import ast
import builtins
import re
import shutil
import string
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from llamaproc import messages
from llamaproc.errors import ConfigError
from llamaproc.messages import CATALOG, message
from llamaproc.recovery import RestartPolicy

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "llamaproc"
# where raised errors must use the catalog (build/ runs before install and keeps its own texts)
COVERED = ["*.py", "pool/*.py", "direct/*.py", "quant/*.py", "testing/*.py", "rpc/*.py", "isolation/*.py", "ray/*.py"]

# Exception constructors that keep a literal message on purpose: (file, class, start of the text) -> why.
LITERAL_MESSAGES = {
    ("__init__.py", "AttributeError", "module "):
        "module __getattr__ repeats the interpreter's own message for a missing attribute (Python's are not "
        "translated either)",
    **{("testing/fake_server.py", cls, text): "the fake repeats the native (C++) message of a real LlamaServer, "
                                              "which is not in the catalog"
       for cls, text in [("StartupError", "cannot listen on "),
                         ("ServerNotRunningError", "the server was stopped before it became ready"),
                         ("ModelLoadError", "injected fault: failed to load model "),
                         ("ResourceError", "injected fault: model "),
                         ("NativeError", "the inference loop stopped unexpectedly"),
                         ("NativeError", "llama.cpp hit a failed assertion while serving a request")]},
}


def _modules(patterns: list[str]) -> dict[str, ast.Module]:
    paths = sorted({p for pattern in patterns for p in SRC.glob(pattern)})
    return {p.relative_to(SRC).as_posix(): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in paths}


def _fields(text: str) -> set[str]:
    """The names of the replacement fields of a ``str.format`` text (``{value!r}`` -> ``value``)."""
    names = set()
    for _, field, spec, _ in string.Formatter().parse(text):
        if field is not None:
            names.add(re.split(r"[.\[]", field, maxsplit=1)[0])
            names |= _fields(spec or "")
    return names


def _message_calls() -> list[tuple[str, ast.Call]]:
    return [(path, node) for path, tree in _modules(["**/*.py"]).items() for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "message"]


def test_catalog_ids_are_dotted_and_texts_are_format_strings_with_named_fields():
    for message_id, text in CATALOG.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", message_id), message_id
        assert text.strip(), message_id
        assert all(name.isidentifier() for name in _fields(text)), (message_id, text)  # no positional {}
    assert len(set(CATALOG.values())) == len(CATALOG), "two ids with one text share one gettext msgid"


def test_every_message_call_names_a_catalog_id_with_exactly_its_fields():
    problems = []
    for path, call in _message_calls():
        where = f"{path}:{call.lineno}"
        first = call.args[0] if call.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)) or len(call.args) != 1:
            problems.append(f"{where}: the id must be one literal string")
            continue
        if first.value not in CATALOG:
            problems.append(f"{where}: {first.value!r} is not in CATALOG")
            continue
        given = {k.arg for k in call.keywords}
        if None in given:
            problems.append(f"{where}: fields must be named (no **mapping)")
            continue
        wanted = _fields(CATALOG[first.value])
        if given != wanted:
            problems.append(f"{where}: {first.value!r} takes {sorted(wanted)}, got {sorted(map(str, given))}")
    assert not problems, "\n".join(problems)


def test_every_catalog_entry_is_used():
    used = {call.args[0].value for _, call in _message_calls()
            if call.args and isinstance(call.args[0], ast.Constant)}
    assert not sorted(set(CATALOG) - used), "entries no code uses"


def _exception_class(call: ast.Call) -> str | None:
    name = call.func.id if isinstance(call.func, ast.Name) else (
        call.func.attr if isinstance(call.func, ast.Attribute) else "")
    builtin = getattr(builtins, name, None)
    if name[:1].isupper() and (name.endswith(("Error", "Exception", "Warning"))
                               or (isinstance(builtin, type) and issubclass(builtin, BaseException))):
        return name
    return None


def _literal_text(node: ast.expr) -> str | None:
    """The leading text of a message written in place (a string, an f-string, a concatenation or
    ``"...".format()``); None for anything else (a message() call, a variable, an attribute)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        head = node.values[0] if node.values else None
        return head.value if isinstance(head, ast.Constant) else ""
    if isinstance(node, ast.BinOp):
        left, right = _literal_text(node.left), _literal_text(node.right)
        return left if left is not None else (None if right is None else "")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _literal_text(node.func.value)
    return None


def test_errors_are_raised_with_catalog_messages():
    """Every exception built in the covered modules (in a ``raise``, or made to be raised later)
    takes its message from :func:`message` (or a variable holding one), not a literal text,
    except those of LITERAL_MESSAGES."""
    problems, seen = [], set()
    for path, tree in _modules(COVERED).items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args and (cls := _exception_class(node))):
                continue
            text = _literal_text(node.args[0])
            if text is None:
                continue
            allowed = next((key for key in LITERAL_MESSAGES if key[:2] == (path, cls) and text.startswith(key[2])),
                           None)
            if allowed is None:
                problems.append(f"{path}:{node.lineno}: {cls}({text[:50]!r}...) is not from the catalog")
            seen.add(allowed)
    assert not problems, "\n".join(problems)
    assert not sorted(set(LITERAL_MESSAGES) - seen), "stale entries of LITERAL_MESSAGES"


def test_messages_module_needs_only_the_standard_library():
    tree = ast.parse((SRC / "messages.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            assert node.module.split(".")[0] in sys.stdlib_module_names or node.module == "__future__"
        elif isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] in sys.stdlib_module_names for alias in node.names)


def test_unknown_id_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match=r"no\.such\.id"):
        message("no.such.id")


def test_message_formats_the_source_text():
    assert message("server.not_running", status="stopped") == "the server is stopped; start() it first"
    assert message("server.load_timeout", timeout=2.5).startswith("the model did not load within 2.5 s. Hint:")


def write_mo(path: Path, translations: dict[str, str]) -> None:
    """A GNU .mo file: little-endian header (magic, revision 0, N, offsets of the original and
    translated string tables, no hash table), the two tables of (length, offset), the strings."""
    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **translations}.items())
    n = len(entries)
    originals, translated = 28, 28 + 8 * n
    offset, table, blob = translated + 8 * n, b"", b""
    for text in [k for k, _ in entries] + [v for _, v in entries]:
        data = text.encode("utf-8")
        table += struct.pack("<2I", len(data), offset + len(blob))
        blob += data + b"\0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<7I", 0x950412DE, 0, n, originals, translated, 0, 0) + table + blob)


@pytest.fixture
def fake_language(tmp_path, monkeypatch):
    """Language ``xx`` with two messages translated, in a locale directory of its own."""
    write_mo(tmp_path / "xx" / "LC_MESSAGES" / "llamaproc.mo", {
        CATALOG["server.not_running"]: "le serveur est {status} ; démarrez-le d'abord (start())",
        CATALOG["restart.window_s"]: "RestartPolicy.window_s doit être un nombre > 0, pas {value!r}",
    })
    monkeypatch.setenv("LANGUAGE", "xx")
    monkeypatch.setattr(messages, "LOCALE_DIR", tmp_path)
    messages._translations.cache_clear()
    yield tmp_path
    messages._translations.cache_clear()  # before monkeypatch restores the environment


def test_gettext_translates_a_message_and_the_rest_stay_en_us(fake_language, monkeypatch):
    assert message("server.not_running", status="stopped") == "le serveur est stopped ; démarrez-le d'abord (start())"
    assert message("server.never_started") == CATALOG["server.never_started"]
    with pytest.raises(ConfigError, match=r"^RestartPolicy\.window_s doit être un nombre > 0, pas -1$"):
        RestartPolicy(window_s=-1)

    monkeypatch.setenv("LANGUAGE", "en")  # a language without a catalog
    messages._translations.cache_clear()
    assert message("server.not_running", status="stopped") == "the server is stopped; start() it first"


def test_without_a_catalog_for_the_language_messages_are_en_us(fake_language, monkeypatch):
    monkeypatch.setattr(messages, "LOCALE_DIR", fake_language / "elsewhere")  # LANGUAGE is still xx
    messages._translations.cache_clear()
    assert message("server.not_running", status="stopped") == "the server is stopped; start() it first"
    with pytest.raises(ConfigError, match=r"^RestartPolicy\.window_s must be a number > 0, got -1$"):
        RestartPolicy(window_s=-1)


def test_pot_template_has_an_entry_for_every_id(tmp_path):
    pot = tmp_path / "llamaproc.pot"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "messages_pot.py"), str(pot)], check=True)
    text = pot.read_text(encoding="utf-8")
    assert sorted(re.findall(r"^#\. id: (\S+)$", text, flags=re.MULTILINE)) == sorted(CATALOG)
    assert text.count("#, python-brace-format\n") == len(CATALOG)
    if shutil.which("msgfmt"):  # gettext's own check of the template, placeholders included
        subprocess.run(["msgfmt", "--check-format", "-o", str(tmp_path / "t.mo"), str(pot)], check=True,
                       capture_output=True)
