"""Prompts for the speculation benchmark, made offline from what the installed Python carries:
code edits of standard-library functions (their source from ``inspect``), extraction and
summaries of documentation sections (``pydoc_data.topics``), JSON reformatting of generated
records, answers quoting a given context, and an open-ended control set.

Each workload is ``(kind, name, messages)``; ``kind`` is ``"repetitive"`` or ``"open"``.
"""

from __future__ import annotations

import inspect
import json
import random
import textwrap
from typing import NamedTuple

REPETITIVE = "repetitive"
OPEN = "open"


class Workload(NamedTuple):
    kind: str
    name: str
    messages: list[dict[str, str]]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _source(obj: object) -> str:
    return textwrap.dedent(inspect.getsource(obj))  # type: ignore[arg-type]


def code_edits() -> list[Workload]:
    import colorsys
    import fnmatch
    import html
    import shlex
    import shutil
    import string

    only = "Reply with the whole function only."
    return [
        _edit("rename", textwrap.indent, "Rename the parameter `predicate` to `should_indent` in this Python function.",
              "Reply with the whole changed function only."),
        _edit("hints", shutil.copyfileobj, "Add type hints to this Python function.", only),
        _edit("docstring", shlex.quote, "Add a longer docstring to this Python function.", only),
        _edit("rename", string.capwords, "Rename the function `capwords` to `capitalize_words`.", only),
        _edit("hints", fnmatch.filter, "Add type hints to this Python function.", only),
        _edit("rename", html.escape, "Rename the parameter `s` to `text` in this Python function.", only),
        _edit("docstring", colorsys.rgb_to_hsv, "Add a docstring to this Python function.", only),
    ]


def _edit(verb: str, function: object, instruction: str, reply: str) -> Workload:
    """Ask for an edit of a standard-library function given as its source."""
    name = f"{verb}:{function.__module__}.{function.__qualname__}"  # type: ignore[attr-defined]
    return Workload(REPETITIVE, name, _user(f"{instruction} {reply}\n\n```python\n{_source(function)}```"))


def _topic(name: str, limit: int = 1800) -> str:
    from pydoc_data.topics import topics

    return topics[name][:limit]


def documentation() -> list[Workload]:
    return [
        Workload(REPETITIVE, "extract:assert", _user(
            "Copy the first paragraph of this documentation exactly.\n\n" + _topic("assert"))),
        Workload(REPETITIVE, "summary:pass", _user(
            "Summarize this documentation, quoting its example code.\n\n" + _topic("pass"))),
        Workload(REPETITIVE, "quote:del", _user(
            "Context:\n" + _topic("del") + "\n\nQuestion: what does deleting a name do? Answer with an "
            "exact quote from the context.")),
        Workload(REPETITIVE, "quote:global", _user(
            "Context:\n" + _topic("global") + "\n\nQuestion: where must names listed in a global statement "
            "not be used? Answer by quoting the context.")),
    ]


def _records(seed: int, n: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    names = ["Ada", "Grace", "Linus", "Guido", "Barbara", "Ken", "Dennis", "Margaret"]
    cities = ["Oslo", "Lima", "Pune", "Accra", "Quito", "Turin"]
    return [{"id": 1000 + i, "name": rng.choice(names), "city": rng.choice(cities),
             "score": round(rng.uniform(0, 100), 1), "active": rng.random() < 0.5} for i in range(n)]


def json_reformat() -> list[Workload]:
    compact = json.dumps(_records(1, 6), separators=(",", ":"))
    pretty = json.dumps(_records(2, 5), indent=2)
    return [
        Workload(REPETITIVE, "json:indent", _user(
            "Reformat this JSON with an indent of 2 spaces. Reply with the JSON only.\n\n" + compact)),
        Workload(REPETITIVE, "json:compact", _user(
            "Rewrite this JSON on one line per record. Reply with the JSON only.\n\n" + pretty)),
    ]


def open_ended() -> list[Workload]:
    return [Workload(OPEN, f"open:{i}", _user(text)) for i, text in enumerate([
        "Write a short story about a lighthouse keeper who finds a map.",
        "Explain why the sky is blue to a ten-year-old.",
        "Give me five ideas for a rainy weekend.",
        "What are the pros and cons of working from home?",
        "Describe how a bicycle works.",
        "Write a poem about autumn in the city.",
        "List three uses of a paperclip.",
        "Explain what a database index is.",
        "Suggest a name for a coffee shop and say why.",
        "How do plants make food?",
    ])]


def all_workloads() -> list[Workload]:
    return code_edits() + documentation() + json_reformat() + open_ended()
