"""GGUF fuzzing in the normal suite: every input that once crashed, hung or raised an untyped
error (tests/fuzz/gguf_regressions.json, regenerated from its spec), and a short smoke of the
fuzzer. Each case runs in a worker child process (tests/fuzz/gguf_fuzz.py), so a crash fails
the test instead of ending the test run. The full run is `python tests/fuzz/gguf_fuzz.py`
(figures in docs/reliability.md)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import gguf_fuzz  # noqa: E402
import gguf_mutate  # noqa: E402
import gguf_struct  # noqa: E402

REGRESSIONS = json.loads((FUZZ / "gguf_regressions.json").read_text())


@pytest.fixture(scope="module")
def fuzz_bases(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gguf-fuzz")
    return workdir, gguf_fuzz.load_bases(workdir, use_smollm2=False)


def _run(specs, fuzz_bases, timeout=20.0):
    workdir, bases = fuzz_bases
    return gguf_fuzz.run_cases(specs, bases, workdir, jobs=1, timeout=timeout, steps=gguf_fuzz.STEPS,
                               mem_limit_gb=8.0, recycle=100, progress=False)


def _regression_params():
    for i, entry in enumerate(REGRESSIONS):
        marks = [pytest.mark.xfail(reason=entry["xfail"], strict=True)] if "xfail" in entry else []
        yield pytest.param(entry, id=f"{i}-{entry['spec']['op']}", marks=marks)


@pytest.mark.parametrize("entry", list(_regression_params()))
def test_a_once_crashing_gguf_input_now_ends_in_a_typed_error(entry, fuzz_bases):
    [res] = _run([entry["spec"]], fuzz_bases, timeout=15.0)
    assert res["verdict"] == "ok", f"{res['verdict']} (was: {entry['was']})"
    for step, expected in entry["expect"].items():
        assert res[step].startswith(f"typed:{expected}"), f"{step}: {res[step]}"
    for step in gguf_fuzz.STEPS:
        assert res[step] == "ok" or res[step].startswith(("typed:", "http:4")), f"{step}: {res[step]}"


def test_mutations_are_deterministic_and_regenerate_the_same_bytes(fuzz_bases):
    _, bases = fuzz_bases
    base = bases["tiny"]
    specs = gguf_mutate.generate("tiny", base, 400, seed=3)
    assert specs == gguf_mutate.generate("tiny", base, 400, seed=3)
    again = gguf_struct.parse(base.raw)
    for spec in random.Random(0).sample(specs, 40):
        assert gguf_mutate.apply_any(spec, base) == gguf_mutate.apply_any(spec, again)
    assert base.encode() == base.raw, "the writer round-trips the model unchanged"
    assert len(base.raw) < 1 << 20, "regression inputs stay small"


@pytest.mark.slow  # about a minute
def test_gguf_fuzz_smoke(fuzz_bases):
    """A few hundred mutated files, every kind of mutation: no death, no hang, no untyped error."""
    _, bases = fuzz_bases
    specs = gguf_mutate.generate("tiny", bases["tiny"], 6000, seed=11)
    by_op: dict[str, list] = {}
    for s in specs:
        by_op.setdefault(s["op"], []).append(s)
    rng = random.Random(11)
    smoke = [s for op, group in sorted(by_op.items()) for s in rng.sample(group, min(len(group), 25))]
    known_unfixed = [e["spec"] for e in REGRESSIONS if "xfail" in e]
    smoke = [s for s in smoke if {k: v for k, v in s.items() if k != "base"} not in
             [{k: v for k, v in k2.items() if k != "base"} for k2 in known_unfixed]]
    results = _run(smoke, fuzz_bases)
    summary = gguf_fuzz.summarize(results)
    bad = [(r["verdict"], r["spec"]) for r in results if r["verdict"] != "ok"]
    assert summary["cases"] == len(smoke) >= 200
    assert not bad, bad[:5]
    started = summary["steps"]["start"]
    assert started.get("ok", 0) > 10 and started.get("typed:ModelLoadError", 0) > 50, started
