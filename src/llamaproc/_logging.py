"""Native log lines -> the ``llamaproc`` logger.

llama.cpp's log output (model loading, server events, errors) is forwarded line by line to
``logging.getLogger("llamaproc")`` with levels mapped (debug, info, warning, error). The
library adds a ``NullHandler``, so nothing is printed unless the application configures
logging. Only lines at or above the logger's effective level cross into Python; that level is
read again whenever a server starts or is queried (or call :func:`sync_log_level`).

Native threads never wait for Python: they queue their lines, and a daemon thread
("llamaproc-log") hands them to the logger. So a slow handler, or a host thread that holds
the GIL, never stalls inference. :func:`flush_logs` delivers what is queued at once; the
library calls it at the end of ``start()`` and ``stop()`` and when a start fails.
"""

from __future__ import annotations

import atexit
import logging
import threading

from ._native import core

logger = logging.getLogger("llamaproc")
logger.addHandler(logging.NullHandler())

_deliver_lock = threading.Lock()  # one deliverer at a time keeps lines in order
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()
_closing = threading.Event()


def _deliver(lock_timeout: float = -1) -> int:
    if not _deliver_lock.acquire(timeout=lock_timeout):
        return 0  # the delivery thread is busy in a (slow) handler: it will get these too
    try:
        records = core.take_log_records()
        for level, line in records:
            logger.log(level, "%s", line)
        return len(records)
    finally:
        _deliver_lock.release()


def _deliver_forever() -> None:
    while not _closing.is_set():
        try:
            if core.wait_for_log_records(0.5):
                _deliver()
        except Exception:  # a broken handler must not end delivery
            logging.getLogger(__name__).exception("delivering a native log line failed")


def flush_logs() -> None:
    """Deliver the native log lines queued so far to the ``llamaproc`` logger, now (waiting at
    most a second for a log handler that is busy on another thread)."""
    while _deliver(lock_timeout=1.0):
        pass


def sync_log_level() -> None:
    """Forward native lines at the ``llamaproc`` logger's current effective level or above."""
    global _thread
    level = logger.getEffectiveLevel()
    if not logger.isEnabledFor(level):  # logging.disable() in effect
        level = logging.CRITICAL + 1
    core.set_log_level(level)
    core.set_native_verbosity(logger.isEnabledFor(logging.DEBUG))
    if _thread is None and not _closing.is_set():
        with _thread_lock:
            if _thread is None:
                _thread = threading.Thread(target=_deliver_forever, name="llamaproc-log", daemon=True)
                _thread.start()


def close() -> None:
    """At interpreter exit: deliver what is left and end the delivery thread."""
    _closing.set()
    core.wake_log_consumers()
    if _thread is not None:
        _thread.join(timeout=2.0)
    try:
        flush_logs()
    except Exception:
        pass


atexit.register(close)
