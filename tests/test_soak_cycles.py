"""Short runs of the soak and the start/stop cycle check (benchmarks/soak.py, benchmarks/cycles.py)
on the tiny model, each in a fresh process so that its baseline is its own. The full runs and
their figures are in docs/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str, out: Path, timeout: float = 300) -> dict:
    r = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)], capture_output=True, text=True,
                       timeout=timeout)
    assert out.exists(), r.stdout[-2000:] + r.stderr[-3000:]
    data = json.loads(out.read_text())
    data["_returncode"] = r.returncode
    data["_stderr"] = r.stderr
    return data


@pytest.mark.slow
def test_quick_soak_mixed_traffic_has_no_failed_request(tiny_model, tmp_path):
    data = _run("soak.py", "--quick", "--model", str(tiny_model), out=tmp_path / "soak.json")
    assert data["failed"] == 0, data["failures"]
    assert data["hung_clients"] == 0
    assert data["_returncode"] == 0
    ran = {kind for kind, n in data["by_kind"].items() if n["ok"] > 0}
    assert ran == set(data["by_kind"]), f"every kind of request ran: {data['by_kind']}"
    assert data["health_after"] == "HEALTHY" and data["slots_busy_after"] == 0
    assert data["server_counts"]["server_error"] == 0 and data["server_counts"]["stream_failed"] == 0
    assert data["latency_s"]["p99"] > 0 and data["requests_after_warmup"] > 50


def test_start_stop_cycles_return_threads_and_fds_to_baseline(tiny_model, tmp_path):
    data = _run("cycles.py", "--model", str(tiny_model), "--cycles", "5", out=tmp_path / "cycles.json")
    assert data["cycles"] == 5 and len(data["rows"]) == 6
    assert data["threads_min_after_stop"] == data["threads_max_after_stop"] == data["threads_baseline"], data["rows"]
    assert data["fds_min_after_stop"] == data["fds_max_after_stop"] == data["fds_baseline"], data["rows"]
    # bytes malloc counts as in use come back: what stays is not a native leak
    assert abs(data["malloc_in_use_total_growth_mib"]) < 1.0, data["rows"]
    # while loaded the server held memory, and a stopped one gives most of it back
    assert data["rss_total_growth_mib"] < 10, data["rows"]
