"""Smoke runs of the benchmarks on the tiny model: their quick paths run and write
well-formed outputs (the figures themselves are for humans, not assertions)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_quantization_benchmark_quick(tiny_model, tmp_path):
    out = tmp_path / "quant"
    r = subprocess.run([sys.executable, str(BENCH / "bench_quant.py"), "--quick", "--model", str(tiny_model),
                        "--types", "F16,Q8_0,Q4_0", "--ctx", "64", "--eval-tokens", "96", "--threads", "1",
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((out / "quant.csv").read_text().splitlines()))
    assert [row["type"] for row in rows] == ["F16", "Q8_0", "Q4_0"]
    f16 = rows[0]
    assert float(f16["mean_kl"]) < 1e-6 and float(f16["top1_agreement"]) == 1.0
    assert all(float(row["pp_tok_s"]) > 0 and float(row["tg_tok_s"]) > 0 for row in rows)
    assert float(rows[1]["size_mib"]) > float(rows[2]["size_mib"])
    table = (out / "quant.md").read_text()
    assert "| Q4_0 |" in table and "dequantized" not in table  # the tiny source is F32
    for png in ("quality_vs_size.png", "speed_vs_size.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_peers_benchmark_quick(tiny_model, tmp_path):
    out = tmp_path / "peers.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_peers.py"), "--quick", "--model", str(tiny_model),
                        "--no-upstream", "--no-llama-cpp-python", "--threads", "1", "--parallel", "2", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    med = data["median"]["llamaproc"]
    for key in ("start_to_ready_s", "rss_after_load_mib", "ttft_p50_ms", "ttft_p95_ms", "single_tok_s",
                "aggregate_2_tok_s", "roofline_fraction"):
        assert med[key] > 0, key
    assert data["bandwidth_Bps"] > 1e8
    assert "roofline" in r.stdout


@pytest.mark.slow  # half a minute: three thread settings under three loads
def test_host_benchmark_quick(tiny_model, tmp_path):
    out = tmp_path / "host.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_host.py"), "--model", str(tiny_model), "--rounds", "1",
                        "--tokens", "16", "--alternating-tokens", "32", "--loads", "idle,py1,alternating",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data["median_tok_s"]) == {"governor", "cores", "cores-1"}
    for setting in data["median_tok_s"].values():
        assert set(setting) == {"idle", "py1", "alternating"} and all(v > 0 for v in setting.values())
    assert all(t >= 1 for seen in data["governor_threads"].values() for t in seen)
    assert data["pair"]["aggregate_tok_s"] > 0 and 0 < data["pair"]["balance"] <= 1
    assert data["idle_samples"] == 0  # the governor samples only while something decodes


@pytest.mark.slow  # two settings of two seconds of traffic each
def test_memory_benchmark_quick(tiny_model, tmp_path):
    out = tmp_path / "memory.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_memory.py"), "--model", str(tiny_model), "--clients", "2",
                        "--seconds", "2", "--settings", "default,limit", "--threads", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["default"]["requests"] > 0 and data["limit"]["requests"] > 0
    assert 0 < data["limit"]["cache_cap_mib"] <= 64


def test_direct_benchmark_quick(tiny_model, tmp_path):
    out = tmp_path / "direct.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_direct.py"), "--model", str(tiny_model), "--rounds", "1",
                        "--calls", "20", "--tokens", "32", "--threads", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["M1_tokenize"]["direct_p50_us"] > 0 and summary["M1_tokenize"]["http_p50_us"] > 0
    assert summary["M3"]["mixed_4_4_tok_s"] > 0 and summary["M4"]["break_to_free_ms"] >= 0


def test_testing_benchmark_quick(tmp_path):
    out = tmp_path / "testing.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_testing.py"), "--cycles", "2", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert 0 < data["fake"]["p50_ms"] and 0 < data["real"]["p50_ms"]


def test_memory_estimate_benchmark_quick(tmp_path):
    out = tmp_path / "estimate.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_memory_estimate.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "| tiny Q4_0 | 4096 / 4 |" in r.stdout and "largest deviation" in r.stdout
    results = json.loads(out.read_text())
    assert results and all(len(res["rows"]) == 4 for res in results)


@pytest.mark.slow
def test_isolation_benchmark_quick(tiny_model, tmp_path):
    out = tmp_path / "isolation.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_isolation.py"), "--model", str(tiny_model), "--rounds", "1",
                        "--tokens", "16", "--threads", "1", "--json", str(out)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert set(summary["I1_start_s"]) == {"none", "process"} and summary["I2_single_tok_s"]["ratio"] > 0
    assert 0 < summary["I4_crash_to_serving_s"] < 60


@pytest.mark.slow
def test_streams_benchmark_quick(tiny_model, tmp_path):
    out = tmp_path / "streams.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_streams.py"), "--model", str(tiny_model), "--rounds", "1",
                        "--tokens", "16", "--threads", "1", "--json", str(out)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["R1"]["ratio"] > 0 and result["R3"]["parked_request_answered"] is True
    assert result["R2"]["stop_with_resumable_stream_s"] < 30


@pytest.mark.smollm2
def test_speculation_benchmark_quick(smollm2_model, tmp_path):
    out = tmp_path / "speculation.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_speculation.py"), "--quick", "--no-upstream", "--model",
                        str(smollm2_model), "--threads", "1", "--json", str(out)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())["model"]
    assert [row["kind"] for row in result["per_prompt"]] == ["repetitive", "repetitive", "open"]
    assert result["summary"]["reference"] == "off" and result["summary"]["streams4_ratio"] > 0
    assert all(row["default"]["tokens"] > 0 and row["off"]["seconds"] > 0 for row in result["per_prompt"])
    assert "tokens differ from speculation off" in r.stdout
