"""Preset INI files (llama-server's ``--models-preset``): errors that name the file and line.

llama.cpp reads the file itself (its keys and their meaning stay exactly llama-server's); this
module checks the syntax first, line by line, so that a typo is reported as ``file:line``
rather than "failed to parse", and points an unknown key that llama.cpp refuses at its line.

The format: ``[name]`` starts a model's section (``[*]`` applies to every model), ``key = value``
sets a llama-server flag (its long or short name without dashes, or its ``LLAMA_ARG_*``
variable; ``load-on-startup``, ``stop-timeout`` and ``dedup-cache-models`` are preset-only
keys), ``;`` or ``#`` starts a comment, and a value may continue on the next line after a
trailing backslash.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError
from ..messages import message

_SECTION = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*([;#].*)?$")
_KEY_VALUE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*(.*)$")
_BLANK_OR_COMMENT = re.compile(r"^\s*([;#].*)?$")
_UNKNOWN_KEY = re.compile(r"option '([^']+)' not recognized in preset '([^']+)'")


def check_preset_file(path: str | Path) -> None:
    """Raise :class:`ConfigError` naming ``path`` and the line, for a file that is missing,
    unreadable, not text, or not INI as llama-server reads it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(message("preset.missing", path=p))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(message("preset.unreadable", path=p, error=exc)) from None
    continued = False
    section_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        if continued:
            continued = line.rstrip().endswith("\\")
            continue
        if _BLANK_OR_COMMENT.match(line):
            continue
        if _SECTION.match(line):
            section_seen = True
            continue
        match = _KEY_VALUE.match(line)
        if match is None:
            if line.lstrip().startswith("["):
                raise ConfigError(message("preset.bad_section", path=p, line=number, text=line.strip()))
            raise ConfigError(message("preset.bad_line", path=p, line=number, text=line.strip()))
        if not section_seen and match.group(1) != "version":
            raise ConfigError(message("preset.key_before_section", path=p, line=number, key=match.group(1)))
        continued = match.group(2).rstrip().endswith("\\")


def locate(error: ConfigError, path: str | Path | None) -> ConfigError:
    """``error`` with ``file:line`` added when it is llama.cpp's "option 'k' not recognized in
    preset 's'" for a key of ``path``; else ``error`` unchanged."""
    match = _UNKNOWN_KEY.search(str(error))
    if path is None or match is None:
        return error
    key, section = match.groups()
    current = None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return error
    for number, line in enumerate(lines, start=1):
        header = _SECTION.match(line)
        if header:
            current = header.group(1)
            continue
        kv = _KEY_VALUE.match(line)
        if kv and kv.group(1) == key and current == section:
            located = ConfigError(message("preset.unknown_key", path=path, line=number, key=key, section=section))
            located.log_tail = error.log_tail
            return located
    return error
