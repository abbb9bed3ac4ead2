"""Native log lines -> the ``llamaproc`` logger.

llama.cpp's log output (model loading, server events, errors) is forwarded line by line to
``logging.getLogger("llamaproc")`` with levels mapped (debug, info, warning, error). The
library adds a ``NullHandler``, so nothing is printed unless the application configures
logging. Only lines at or above the logger's effective level cross into Python; that level is
read again whenever a server starts or is queried (or call :func:`sync_log_level`).
"""

from __future__ import annotations

import logging

from ._native import core

logger = logging.getLogger("llamaproc")
logger.addHandler(logging.NullHandler())

_installed = False


def _emit(level: int, line: str) -> None:
    logger.log(level, "%s", line)


def sync_log_level() -> None:
    """Forward native lines at the ``llamaproc`` logger's current effective level or above."""
    global _installed
    level = logger.getEffectiveLevel()
    if not logger.isEnabledFor(level):  # logging.disable() in effect
        level = logging.CRITICAL + 1
    if not _installed:
        core.set_log_sink(_emit, level)
        _installed = True
    else:
        core.set_log_level(level)
