"""The web pages: a chat page at ``/`` and a live dashboard at ``/dashboard/``.

Plain HTML, CSS and JavaScript files in ``static/``, written for llamaproc (no build step, no
third-party code, nothing fetched at run time). Every server and pool serves them through
llama.cpp's static-file mount, the one llama-server's ``--path`` sets, unless its flags say
``--no-webui`` (the API is unchanged) or name a ``--path`` of their own.

The pages read the OpenAI-compatible API and one llamaproc endpoint, ``GET /llamaproc/status``
(docs/webui.md). With ``--api-key`` only the files themselves are served without a key: the
pages ask for it once and keep it in the browser's localStorage.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["web_ui_dir"]


def web_ui_dir() -> Path:
    """The directory that holds the pages (``index.html``, ``dashboard/``, ``assets/``)."""
    return Path(__file__).resolve().parent / "static"
