"""The CPU governor: a server without an explicit thread count decodes with every physical core
while the host's own threads are idle, leaves a core to each one they keep busy, and shares the
cores with the other servers of the process; an explicit count is never changed.

Assertions are on the thread counts the servers report (metrics().decode_threads), never on
timing; each wait is bounded by a number of requests, not a sleep.
"""

from __future__ import annotations

import threading

import pytest

from llamaproc import LlamaServer
from llamaproc._native import core

from conftest import tiny_config

GOVERNOR = core.cpu_governor_status()
needs_two_cores = pytest.mark.skipif(not GOVERNOR["active"] or GOVERNOR["max_threads"] < 2,
                                     reason="the governor needs /proc/self/task and at least two cores")


class SpinningThread:
    """A pure-Python thread that keeps a core busy while the context is open."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        x = 0
        while not self._stop.is_set():
            for _ in range(1000):
                x += 1

    def __enter__(self) -> SpinningThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def decode(server: LlamaServer, tokens: int = 48) -> None:
    out = server.direct.completions.create(prompt="Once upon a time", max_tokens=tokens, ignore_eos=True)
    assert out["usage"]["completion_tokens"] == tokens


def decode_until(server: LlamaServer, threads: int, reason: str, attempts: int = 200) -> tuple[int, str]:
    """Decodes until the server reports ``threads`` for ``reason`` (or attempts run out);
    returns what it reported last."""
    seen = (0, "")
    for _ in range(attempts):
        decode(server)
        m = server.metrics()
        seen = (m.decode_threads, m.decode_threads_reason)
        if seen == (threads, reason):
            break
    return seen


@needs_two_cores
def test_the_threads_follow_a_spinning_host_thread_down_and_back_up(tiny_model):
    most = GOVERNOR["max_threads"]
    with LlamaServer.start(tiny_config(tiny_model, threads=None)) as server:
        assert decode_until(server, most, "idle host") == (most, "idle host")
        with SpinningThread():
            assert decode_until(server, most - 1, "host busy") == (most - 1, "host busy")
            assert core.cpu_governor_status()["reserved_for_host"] >= 1 and server.metrics().host_cpus > 0.2
        assert decode_until(server, most, "idle host") == (most, "idle host")
        assert core.cpu_governor_status()["reserved_for_host"] == 0


@needs_two_cores
@pytest.mark.parametrize("threads", [1, 2])
def test_an_explicit_thread_count_is_never_changed(tiny_model, threads):
    with LlamaServer.start(tiny_config(tiny_model, threads=threads)) as server:
        decode(server)
        assert (server.metrics().decode_threads, server.metrics().decode_threads_reason) == (threads, "fixed")
        with SpinningThread():
            for _ in range(10):
                decode(server)
                m = server.metrics()
                assert (m.decode_threads, m.decode_threads_reason) == (threads, "fixed")


@needs_two_cores
def test_two_servers_in_one_process_share_the_budget(tiny_model):
    """Two governed servers decoding at once take turns at full width (the decode gate), so
    their thread pools never spin on the same cores; both finish."""
    with LlamaServer.start(tiny_config(tiny_model, threads=None)) as a, \
            LlamaServer.start(tiny_config(tiny_model, threads=None)) as b:
        decode(a), decode(b)
        before = core.decode_gate_stats()
        start = threading.Barrier(2)
        done: list[str] = []

        def run(name: str, server: LlamaServer) -> None:
            start.wait()
            decode(server, 400)
            done.append(name)

        workers = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", a), ("b", b))]
        for t in workers:
            t.start()
        reasons: set[str] = set()
        while any(t.is_alive() for t in workers):  # what the servers report while both decode
            reasons |= {a.metrics().decode_threads_reason, b.metrics().decode_threads_reason}
        for t in workers:
            t.join()
        after = core.decode_gate_stats()
        assert sorted(done) == ["a", "b"]
        assert after["decodes"] - before["decodes"] >= 2 * 400
        if after["active"]:  # Linux builds wrap the decode calls
            assert after["waited"] > before["waited"]
            assert "shared" in reasons


def test_the_governor_samples_only_while_something_decodes(tiny_model):
    with LlamaServer.start(tiny_config(tiny_model, threads=None)) as server:
        decode(server)
        before = core.cpu_governor_status()["samples"]
        server.health_check()
        server.metrics()
        assert core.cpu_governor_status()["samples"] == before
