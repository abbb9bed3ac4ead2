"""quantize(), inspect_model(), QuantType, the Evaluator and the quality statistics."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from http_client import post
from llamaproc import Evaluator, LlamaServer, QualityStats, QuantType, errors, inspect_model, quantize
from llamaproc.testing import make_tiny_model


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    # 256-wide rows so K-quants apply without fallback
    return make_tiny_model(tmp_path_factory.mktemp("wide") / "wide.gguf", n_embd=256, n_head=4, n_head_kv=2,
                           n_ff=512, n_layers=2, seed=3)


def test_inspect_reads_back_what_was_written(tmp_path):
    path = make_tiny_model(tmp_path / "m.gguf", n_layers=3, n_embd=64, n_vocab=400, n_ff=96, context_length=1024)
    info = inspect_model(path)
    assert info.architecture == "llama"
    assert (info.layers, info.embedding_size, info.vocab_size, info.context_length) == (3, 64, 400, 1024)
    assert info.file_type == "F32"
    assert info.has_chat_template
    assert info.file_bytes == path.stat().st_size
    per_layer = 64 * 64 * 2 + 2 * (64 // 4 * 2) * 64 + 3 * 96 * 64 + 2 * 64
    assert info.parameters == 2 * 400 * 64 + 64 + 3 * per_layer
    assert info.tensor_types == {"f32": 3 + 9 * 3}
    assert abs(info.bits_per_weight - 32) < 1e-9


@pytest.mark.parametrize("qtype", ["F16", "q8_0", "Q4_0", "Q4_K_M", "Q6_K", "Q2_K"])
def test_quantized_models_load_and_generate(wide_model, tmp_path, qtype):
    seen = []
    result = quantize(wide_model, tmp_path / f"{qtype}.gguf", qtype,
                      progress=lambda done, total, name: seen.append((done, total, name)))
    assert result.qtype is QuantType.parse(qtype)
    assert result.info.file_type == QuantType.parse(qtype).name
    assert result.destination_bytes < result.source_bytes
    assert [d for d, _, _ in seen] == list(range(1, len(seen) + 1)) and seen[-1][0] == seen[-1][1]
    assert sum(result.info.tensor_types.values()) == seen[-1][1]
    with LlamaServer.start(tiny_config(result.destination)) as server:
        # random weights may sample EOS early: ignore it, the point is that the type decodes
        status, body = post(server.url + "/completion", {"prompt": "hello", "n_predict": 5, "ignore_eos": True})
        assert status == 200 and body["tokens_predicted"] == 5


def test_k_quant_falls_back_on_narrow_rows(tiny_model, tmp_path):
    # 64-wide rows are not a multiple of 256: llama.cpp picks legacy types instead, and
    # inspect reports the real mix rather than the nominal name
    result = quantize(tiny_model, tmp_path / "k.gguf", "Q4_K_M")
    assert result.info.file_type == "Q4_K_M"
    assert not any(t.endswith("_K") for t in result.info.tensor_types), result.info.tensor_types


def test_quant_type_parsing():
    assert QuantType.parse("q4_k_m") is QuantType.Q4_K_M
    assert QuantType.parse("MOSTLY_Q8_0") is QuantType.Q8_0
    assert QuantType.parse(" all_f32 ") is QuantType.F32
    assert QuantType.parse("iq2-xxs") is QuantType.IQ2_XXS
    assert QuantType.parse(QuantType.BF16) is QuantType.BF16
    assert QuantType.parse(15) is QuantType.Q4_K_M
    assert QuantType.parse("nvfp4") is QuantType.NVFP4
    with pytest.raises(errors.ConfigError, match="Q4_K_M") as info:
        QuantType.parse("Q4_K_X")
    assert isinstance(info.value, ValueError)
    for bad in (True, 4, 1024, 2**70, 1.0, None):
        with pytest.raises(errors.ConfigError, match=f"unknown quantization type {re.escape(repr(bad))};"):
            QuantType.parse(bad)
    assert QuantType.IQ2_XS.needs_imatrix and not QuantType.Q4_K_M.needs_imatrix
    assert QuantType.Q4_K_M.__doc__ == "Q4_K - Medium"  # llama.cpp's own description


def _llama_h() -> Path | None:
    root = os.environ.get("LLAMAPROC_LLAMA_CPP_DIR") or Path(__file__).resolve().parents[1] / "vendor" / "llama.cpp"
    header = Path(root) / "include" / "llama.h"
    return header if header.is_file() else None


@pytest.mark.skipif(_llama_h() is None, reason="llama.cpp source not found (vendor/llama.cpp or LLAMAPROC_LLAMA_CPP_DIR)")
def test_quant_type_is_exactly_llama_ftype():
    # read the enum independently of the build: every enumerator that is not commented out
    header = _llama_h()
    assert header is not None
    enum = re.search(r"enum\s+llama_ftype\s*\{(.*?)\};", header.read_text(), re.S)
    assert enum, "no enum llama_ftype in llama.h"
    body = re.sub(r"//[^\n]*", "", enum.group(1))
    declared = {re.sub(r"^(MOSTLY|ALL)_", "", name): int(value)
                for name, value in re.findall(r"LLAMA_FTYPE_(\w+)\s*=\s*(\d+)", body) if name != "GUESSED"}
    assert {t.name: t.value for t in QuantType} == declared
    assert len(declared) >= 36


@pytest.mark.parametrize(("name", "value"), [("NVFP4", 39), ("Q1_0", 40), ("Q2_0", 41)])
def test_inspect_names_the_newer_file_types(tmp_path, name, value):
    import gguf

    assert QuantType[name].value == value
    path = tmp_path / f"{name}.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(value)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert inspect_model(path).file_type == name


def test_bad_quantize_inputs(tiny_model, tmp_path):
    with pytest.raises(errors.ConfigError, match="valid"):
        quantize(tiny_model, tmp_path / "a.gguf", "Q9_9")
    with pytest.raises(errors.ModelLoadError, match="does not exist"):
        quantize(tmp_path / "missing.gguf", tmp_path / "b.gguf", "Q8_0")
    with pytest.raises(errors.ConfigError, match="same file"):
        quantize(tiny_model, tiny_model, "Q8_0", overwrite=True)
    existing = tmp_path / "exists.gguf"
    existing.write_bytes(b"keep me")
    with pytest.raises(errors.ConfigError, match="overwrite"):
        quantize(tiny_model, existing, "Q8_0")
    assert existing.read_bytes() == b"keep me"
    quantize(tiny_model, existing, "Q8_0", overwrite=True)
    assert inspect_model(existing).file_type == "Q8_0"
    with pytest.raises(errors.ConfigError, match="importance matrix"):
        quantize(tiny_model, tmp_path / "iq.gguf", "IQ2_XXS")


def test_corrupt_source_leaves_nothing_behind(tiny_model, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(tiny_model.read_bytes()[:5000])
    with pytest.raises(errors.ModelLoadError):
        quantize(bad, tmp_path / "out.gguf", "Q8_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf"]


def test_cancel_from_progress_leaves_nothing_behind(tiny_model, tmp_path):
    calls = []

    def stop_after_three(done, total, name):
        calls.append(done)
        return done < 3

    with pytest.raises(errors.LlamaProcError, match="cancelled"):
        quantize(tiny_model, tmp_path / "out.gguf", "Q8_0", progress=stop_after_three)
    assert calls == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []


def test_exception_in_progress_propagates_and_cleans_up(tiny_model, tmp_path):
    def boom(done, total, name):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        quantize(tiny_model, tmp_path / "out.gguf", "Q8_0", progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_requantize_needs_permission(wide_model, tmp_path):
    q8 = quantize(wide_model, tmp_path / "q8.gguf", "Q8_0").destination
    with pytest.raises(errors.ModelLoadError, match="requantiz(.|\n)*Hint: .*allow_requantize=True"):
        quantize(q8, tmp_path / "q4.gguf", "Q4_0")
    assert inspect_model(quantize(q8, tmp_path / "q4.gguf", "Q4_0", allow_requantize=True).destination).file_type == "Q4_0"


def test_evaluator_is_deterministic_and_normalised(tiny_model):
    with Evaluator(tiny_model, context_size=128, threads=1) as ev:
        tokens = ev.tokenize("hello world, hello sea")
        a = ev.logprobs(tokens)
        b = ev.logprobs(tokens)
        assert a.shape == (len(tokens), ev.n_vocab) and a.dtype == np.float32
        assert np.array_equal(a, b)
        assert np.allclose(np.exp(a).sum(axis=1), 1.0, atol=1e-4)
        assert np.allclose(ev.token_logprobs(tokens), a[np.arange(len(tokens) - 1), tokens[1:]])


def test_evaluator_is_safe_to_share_between_threads(tiny_model):
    # logprobs() releases the GIL: calls from several threads on one Evaluator must take turns
    # on its llama_context, each getting exactly what it gets alone
    with Evaluator(tiny_model, context_size=128, threads=1) as ev:
        texts = ["hello world", "the quick brown fox jumps over the lazy dog", "a b c d e f g h i j k l m n o p",
                 "some text to score, a little longer than a few tokens and then some more of it"]
        sequences = [ev.tokenize(t) for t in texts]
        expected = [ev.logprobs(s) for s in sequences]
        results: list[list[np.ndarray]] = [[] for _ in sequences]
        failures: list[BaseException] = []
        start = threading.Barrier(len(sequences))

        def work(i: int) -> None:
            try:
                start.wait()
                for _ in range(15):
                    results[i].append(ev.logprobs(sequences[i]))
                    assert np.array_equal(ev.tokenize(texts[i]), sequences[i])
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sequences))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures, failures
        for i, runs in enumerate(results):
            assert len(runs) == 15
            for got in runs:
                assert np.array_equal(got, expected[i]), f"thread {i} got another sequence's numbers"


def test_evaluator_agrees_with_a_greedy_completion(tiny_model):
    with Evaluator(tiny_model, context_size=128, threads=1) as ev:
        tokens = ev.tokenize("the quick brown fox")
        expected = int(ev.logprobs(tokens)[-1].argmax())
    with LlamaServer.start(tiny_config(tiny_model)) as server:
        status, body = post(server.url + "/completion", {"prompt": [int(t) for t in tokens], "n_predict": 1,
                                                          "temperature": 0, "return_tokens": True})
    assert status == 200
    assert body["tokens"] == [expected]


def test_evaluator_rejects_bad_tokens_and_lengths(tiny_model):
    with Evaluator(tiny_model, context_size=16, threads=1) as ev:
        with pytest.raises(errors.ConfigError, match="outside the vocabulary"):
            ev.logprobs([1, ev.n_vocab + 5])
        with pytest.raises(errors.ConfigError, match="longer than the context"):
            ev.logprobs(list(range(1, 40)))
    with pytest.raises(errors.ModelLoadError):
        Evaluator(tiny_model.with_name("nope.gguf"))


def test_quality_stats_of_a_model_against_itself_and_another(tiny_model, tmp_path):
    q4 = quantize(tiny_model, tmp_path / "q4.gguf", "Q4_0").destination
    with Evaluator(tiny_model, context_size=64, threads=1) as ref, Evaluator(q4, context_size=64, threads=1) as cur:
        tokens = ref.tokenize("some text to score, a little longer than a few tokens")
        ref_lp, cur_lp = ref.logprobs(tokens)[:-1], cur.logprobs(tokens)[:-1]
    same, other = QualityStats(), QualityStats()
    same.add(ref_lp, ref_lp, tokens[1:])
    other.add(ref_lp, cur_lp, tokens[1:])
    assert same.mean_kl == pytest.approx(0.0, abs=1e-9) and same.top1_agreement == 1.0
    assert same.perplexity == pytest.approx(same.reference_perplexity)
    nll = -ref_lp[np.arange(len(tokens) - 1), tokens[1:]].astype(np.float64)
    assert same.perplexity == pytest.approx(float(np.exp(nll.mean())), rel=1e-6)
    assert other.mean_kl > 0 and 0 <= other.top1_agreement <= 1


def test_cli_quantize_and_inspect(tiny_model, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "q8.gguf"
    r = subprocess.run([sys.executable, "-m", "llamaproc", "quantize", str(tiny_model), str(out), "q8_0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Q8_0" in r.stdout and out.is_file()
    r = subprocess.run([sys.executable, "-m", "llamaproc", "inspect", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "q8_0" in r.stdout and "architecture" in r.stdout
    r = subprocess.run([sys.executable, "-m", "llamaproc", "inspect", str(out), "--json"], capture_output=True,
                       text=True, timeout=60)
    assert json.loads(r.stdout)["file_type"] == "Q8_0"
    r = subprocess.run([sys.executable, "-m", "llamaproc", "quantize", str(tiny_model), str(out), "q8_0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "overwrite" in r.stderr


def test_the_old_inspect_name_still_works_but_warns(tiny_model):
    import llamaproc

    with pytest.warns(DeprecationWarning, match="inspect_model"):
        old = llamaproc.inspect
    assert old is inspect_model and old(tiny_model).architecture == inspect_model(tiny_model).architecture
