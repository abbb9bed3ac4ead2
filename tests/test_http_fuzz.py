"""HTTP fuzzing in the normal suite: a few hundred hostile requests of every category against a
server in a child process (tests/fuzz/http_fuzz.py), and the requests that once broke it. The
full run is `python tests/fuzz/http_fuzz.py --requests 7000` (figures in docs/reliability.md)."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import http_fuzz  # noqa: E402

# What a 5xx answer to a client mistake looks like today (classify_5xx), until call_route()
# maps these exceptions to 400: a class not in this list is a new kind of server error.
KNOWN_5XX_CLASSES = {
    "nlohmann::json::parse_error", "nlohmann::json::type_error", "nlohmann::json::out_of_range",
    "nlohmann::json::invalid_iterator", "nlohmann::json::other_error", "std::out_of_range",
    "std::runtime_error (JSON schema conversion)", "std::runtime_error (grammar)", "std::runtime_error (lora field)",
    "std::runtime_error (dry_sequence_breakers)", "std::runtime_error (request validation)",
    "std::runtime_error (chat template)", "std::invalid_argument/out_of_range from std::sto*",
    "std::bad_alloc/length_error", "std::regex_error", "other: input",
}
# Requests that made the server FAILED or grew it without bound, before they were validated.
# The body that matters is shown; each runs alone on a fresh server in a child process.
HOSTILE_REGRESSIONS = [
    # an unknown grammar trigger type was a GGML_ASSERT on the serving loop (the server failed);
    # patches/0003 refuses it while the request is parsed
    pytest.param("/completion", {"prompt": "hello", "n_predict": 8, "grammar_triggers": [{"type": 99, "value": "x"}]},
                 id="grammar-trigger-type"),
    # a repetition {m,n} with n < m grew memory until the OOM killer ended the host (patches/0003)
    pytest.param("/completion", {"prompt": "hello", "n_predict": 8, "grammar": "root ::= \"a\"{2,1}"},
                 id="grammar-repetition-range"),
]


def _smoke_cases(n_per_category: int = 25, seed: int = 5) -> list[dict]:
    cases = http_fuzz.generate(8000, seed)
    rng = random.Random(seed)
    by_cat: dict[str, list[dict]] = {}
    for c in cases:
        body = c.get("body") or ""
        if "{2,1}" in body:  # the unbounded-memory grammar: a regression test of its own, below
            continue
        by_cat.setdefault(c["cat"], []).append(c)
    picked = [c for cat in by_cat.values() for c in rng.sample(cat, min(len(cat), n_per_category))]
    for i, c in enumerate(picked):
        c["id"] = i
    return picked


# the smoke run takes about a minute: every test that reads it is slow (`-m "not slow"` skips it)
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("http-fuzz")
    cases = _smoke_cases()
    summary = http_fuzz.run(cases, out, clients=4, timeout=30.0, progress=False, mem_limit_gb=3.0, stop_check_s=15.0)
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return cases, summary, results


@slow
def test_hostile_requests_never_end_or_hang_the_server_and_it_still_answers_correctly(smoke):
    cases, summary, results = smoke
    assert summary["requests"] == len(cases) >= 250
    assert set(summary["by_category"]) >= {"invalid_json", "wrong_type", "numbers", "huge", "utf8", "grammar", "sampler",
                                           "disconnect", "slow", "protocol", "routes", "embed", "unknown_fields"}
    assert summary["deaths"] == 0, summary["death_details"]
    assert summary["hangs"] == 0, [r for r in results if r["hang"]][:3]
    assert summary["probes_all_same_as_before"], summary["probe_failures"]
    for name, final in summary["final"].items():
        if name == "stop_with_half_sent_requests":
            continue
        assert final["status"].get("status") == "ready", (name, final)
        assert final["status"].get("slots_busy") == 0, (name, final)
        assert final["stop_seconds"] is not None and final["stop_seconds"] < 5, (name, final)


@slow
def test_valid_requests_among_the_hostile_ones_succeed(smoke):
    _, summary, results = smoke
    valid = [r for r in results if r["intent"] == "valid" and not r.get("collateral")]
    assert len(valid) > 20
    bad = [(r["path"], r["status"], r.get("body", "")[:120]) for r in valid if not 200 <= (r["status"] or 0) < 300]
    assert not bad, bad[:5]


@slow
def test_every_5xx_to_a_client_mistake_is_of_a_known_class(smoke):
    _, summary, _ = smoke
    unknown = {k: v for k, v in summary["5xx_classes"].items()
               if not any(k.startswith(known) for known in KNOWN_5XX_CLASSES)}
    assert not unknown, unknown


@slow
def test_client_mistakes_are_answered_4xx_never_5xx(smoke):
    _, summary, _ = smoke
    assert summary["5xx_on_client_errors"] == 0, {k: v["count"] for k, v in summary["5xx_classes"].items()}


@slow
def test_nothing_but_the_grammar_parser_writes_to_stderr(smoke):
    _, summary, _ = smoke
    others = {cat: n for cat, n in summary["stderr_bytes_by_category"].items() if cat != "grammar" and n}
    assert not others, others


@slow
def test_a_bad_grammar_writes_nothing_to_stderr(smoke):
    _, summary, _ = smoke
    assert summary["stderr_bytes_by_category"].get("grammar", 0) == 0


@slow
def test_stop_is_bounded_while_slow_clients_hold_half_sent_requests(smoke):
    # bounded by the client timeout: 10 s by default (llama-server's is an hour), --timeout sets it
    _, summary, _ = smoke
    assert summary["final"]["stop_with_half_sent_requests"]["bounded"], summary["final"]


@pytest.mark.parametrize(("path", "body"), HOSTILE_REGRESSIONS)
def test_a_request_that_once_broke_the_server_is_answered_4xx_and_it_keeps_serving(path, body, tmp_path):
    srv = http_fuzz.ServerChild(tmp_path, "regression", mem_limit_gb=1.5)
    srv.start()
    try:
        t0 = time.monotonic()
        r = http_fuzz.exchange(srv.port, {"method": "POST", "path": path, "body": http_fuzz._json(body)}, 20.0)
        seconds = time.monotonic() - t0
        alive = srv.alive()
        peak = 0
        if alive:
            with open(f"/proc/{srv.proc.pid}/status") as fh:
                peak = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
        health = http_fuzz.exchange(srv.port, {"method": "GET", "path": "/health"}, 10)["status"] if alive else None
    finally:
        srv.kill()
    assert alive, "the server process died"
    assert r["status"] is not None and 400 <= r["status"] < 500, (r["status"], r.get("body", b"")[:300])
    # (the memory limit turns an unbounded allocation into bad_alloc: what matters is how far it got)
    assert seconds < 10 and peak < 256 << 20, (seconds, peak)
    assert health == 200
