"""Write the gettext template (.pot) of llamaproc's user-facing messages.

    python scripts/messages_pot.py llamaproc.pot     # or no argument: to stdout

One entry per en-US source text of ``llamaproc.messages.CATALOG`` (the msgid), with its id as
an extracted comment (``#. id: server.not_running``) and the ``python-brace-format`` flag: every
text goes through ``str.format``, so ``msgfmt --check`` verifies that a translation keeps the
placeholders. Ids that share a text share an entry (one ``#. id:`` line each). See
``src/llamaproc/messages.py`` for where the compiled ``.mo`` files go. The template is made on
demand, not committed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

MESSAGES = Path(__file__).resolve().parent.parent / "src" / "llamaproc" / "messages.py"

HEADER = """\
# Template of llamaproc's user-facing messages (en-US source texts).
# Made by scripts/messages_pot.py from llamaproc.messages.CATALOG; do not edit.
#
#, fuzzy
msgid ""
msgstr ""
"Project-Id-Version: llamaproc\\n"
"Report-Msgid-Bugs-To: \\n"
"PO-Revision-Date: YEAR-MO-DA HO:MI+ZONE\\n"
"Last-Translator: FULL NAME <EMAIL@ADDRESS>\\n"
"Language-Team: LANGUAGE <LL@li.org>\\n"
"Language: \\n"
"MIME-Version: 1.0\\n"
"Content-Type: text/plain; charset=UTF-8\\n"
"Content-Transfer-Encoding: 8bit\\n"
"""


def load_messages() -> ModuleType:
    """``llamaproc.messages`` from this checkout, without importing the package (standard library only)."""
    spec = importlib.util.spec_from_file_location("llamaproc_messages", MESSAGES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def po_string(keyword: str, text: str) -> str:
    """``keyword "text"`` in PO syntax; a text with newlines as one quoted line per line."""
    def quote(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n") + '"'

    lines = text.splitlines(keepends=True)
    if len(lines) <= 1:
        return f"{keyword} {quote(text)}"
    return "\n".join([f'{keyword} ""', *(quote(line) for line in lines)])


def make_pot(catalog: dict[str, str]) -> str:
    ids_of: dict[str, list[str]] = {}
    for message_id, text in catalog.items():
        ids_of.setdefault(text, []).append(message_id)
    entries = [HEADER]
    for text, ids in ids_of.items():
        comments = "".join(f"#. id: {message_id}\n" for message_id in ids)
        entries.append(f'{comments}#, python-brace-format\n{po_string("msgid", text)}\nmsgstr ""\n')
    return "\n".join(entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", help="the .pot file to write (default: stdout)")
    args = parser.parse_args(argv)
    pot = make_pot(load_messages().CATALOG)
    if args.output is None:
        sys.stdout.write(pot)
    else:
        Path(args.output).write_text(pot, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
