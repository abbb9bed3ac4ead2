"""Speculative decoding: n-gram drafts on by default, with an adaptive draft length.

The policy (cpp/core/server/draft_policy.h) is tested on its own with synthetic step costs,
and end to end on the real SmolLM2 model: it drafts where the answer copies its input, backs
off where nothing repeats, a request can turn it off, requests with log-probs are never
speculated (their probabilities stay exact), and grammar-constrained output stays valid.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from http_client import post
from llamaproc import LlamaServer, ModelPool, ModelSpec, PoolConfig, ServerConfig, errors
from llamaproc._native import core

# A text the model is asked to copy, written for this test.
PASSAGE = (
    "The harbour office opens at seven in the morning and closes at five in the evening. "
    "Boats that arrive after five must wait at the outer buoy until the office opens again. "
    "Every captain signs the arrival book, states the cargo, and pays the mooring fee in cash. "
    "Fishing boats under ten metres pay half the fee, and rowing boats pay nothing at all."
)
COPY = [{"role": "user", "content": "Copy this text exactly, word for word:\n\n" + PASSAGE}]
OPEN = [{"role": "user", "content": "What are the pros and cons of working from home?"}]


# ---- the policy on its own -------------------------------------------------------------------

C1 = 10_000  # microseconds of a plain one-token step


def _warm(policy, marginal: float) -> None:
    """Time a few plain steps and a few verification steps of a given marginal cost per token."""
    for _ in range(4):
        policy.step_timed(1, C1)
    for n in (3, 5, 9, 17):
        for _ in range(3):
            policy.step_timed(n, int(C1 + (n - 1) * marginal * C1))


def _drive(policy, steps: int, kept) -> list[int]:
    """Run `steps` decode steps of slot 0, each draft verified with kept(k) of its k tokens
    accepted; returns each step's draft length (0: none)."""
    lengths = []
    for _ in range(steps):
        if k := policy.draft_max(0, 100, 1):
            policy.verified(0, k, kept(k))
        lengths.append(k)
    return lengths


def test_cheap_verification_and_full_acceptance_grow_the_draft_to_its_cap():
    policy = core.DraftPolicy(1)
    _warm(policy, marginal=0.1)
    policy.begin(0)
    lengths = _drive(policy, 12, kept=lambda k: k)
    assert lengths[0] > 0 and lengths[-1] == 16, lengths
    assert lengths == sorted(lengths), lengths


def test_misses_stop_drafting_and_probes_thin_out():
    policy = core.DraftPolicy(1)
    _warm(policy, marginal=0.3)
    policy.begin(0)
    drafting_steps = [step for step, k in enumerate(_drive(policy, 2000, kept=lambda k: 0)) if k]
    # a few drafts until the estimate falls, then probes whose spacing doubles up to 256 steps
    assert len(drafting_steps) < 20, drafting_steps
    gaps = [b - a for a, b in zip(drafting_steps, drafting_steps[1:])]
    assert gaps[-1] >= 200, gaps


def test_a_probe_that_pays_brings_drafting_back():
    policy = core.DraftPolicy(1)
    _warm(policy, marginal=0.2)
    policy.begin(0)
    _drive(policy, 300, kept=lambda k: 0)  # nothing accepted: drafting stops
    assert policy.acceptance(0) < 0.3
    # the output starts copying its input: every draft is accepted
    resumed = max(_drive(policy, 300, kept=lambda k: k))
    assert resumed >= 8 and policy.acceptance(0) > 0.8


def test_no_draft_when_verification_costs_as_much_as_the_tokens_it_saves():
    policy = core.DraftPolicy(1)
    _warm(policy, marginal=1.0)  # a k-token batch costs k plain steps: nothing to gain
    policy.begin(0)
    drafted = 0
    for _ in range(500):
        if k := policy.draft_max(0, 100, 1):
            drafted += 1
            policy.verified(0, k, k)  # even fully accepted drafts only break even
    assert drafted <= 6


def test_nothing_is_drafted_before_a_step_was_timed_or_while_slots_share_the_batch():
    policy = core.DraftPolicy(2)
    assert policy.draft_max(0, 100, 1) == 0  # no cost known yet
    _warm(policy, marginal=0.1)
    assert policy.draft_max(0, 100, 1) > 0
    assert policy.draft_max(1, 100, 2) == 0


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["step", "time", "verify", "begin"]),
                              st.integers(0, 3), st.integers(0, 40), st.integers(0, 40), st.integers(1, 50_000)),
                    max_size=200))
def test_the_draft_never_exceeds_what_fits_or_sixteen_and_stays_off_for_a_shared_batch(ops):
    policy = core.DraftPolicy(4)
    for op, slot, a, b, us in ops:
        if op == "step":
            k = policy.draft_max(slot, a, 1 + b % 3)
            assert 0 <= k <= min(a, 16)
            if b % 3:
                assert k == 0
        elif op == "time":
            policy.step_timed(1 + a, us)
        elif op == "verify":
            policy.verified(slot, a, b)
            assert 0.0 < policy.acceptance(slot) < 1.0
        else:
            policy.begin(slot)


# ---- configuration -------------------------------------------------------------------------

def test_speculation_false_passes_spec_type_none_and_conflicts_are_refused(smollm2_model):
    argv = ServerConfig(model_path=smollm2_model, speculation=False).to_argv()
    assert argv[argv.index("--spec-type") + 1] == "none"
    assert "--spec-type" not in ServerConfig(model_path=smollm2_model).to_argv()
    with pytest.raises(errors.ConfigError, match="speculation=False"):
        ServerConfig(model_path=smollm2_model, speculation=False, extra_args=("--spec-type", "ngram-mod"))
    with pytest.raises(errors.ConfigError, match="speculation=False"):
        ModelSpec(model_path=smollm2_model, speculation=False, extra_args=("--spec-default",))
    with pytest.raises(errors.ConfigError, match="speculation must be a bool"):
        ServerConfig(model_path=smollm2_model, speculation="yes")


def test_speculation_false_refuses_every_flag_the_native_default_steps_aside_for(tiny_model):
    from llamaproc._native import core
    from llamaproc.config import SPECULATION_FLAGS, check_speculation

    # one list on each side of the binding: the check must know every flag the server obeys
    assert sorted(core.speculation_flags()) == sorted(SPECULATION_FLAGS)
    for flag in core.speculation_flags():
        with pytest.raises(errors.ConfigError, match="speculation=False"):
            check_speculation(False, (flag, "x"))
    with pytest.raises(errors.ConfigError, match="speculation=False"):
        ServerConfig(model_path=tiny_model, speculation=False, extra_args=("-hfd", "user/model"))


def test_pool_models_speculate_by_default_and_a_spec_can_switch_it_off(tiny_model):
    config = PoolConfig(models={
        "on": ModelSpec(model_path=tiny_model, context_size=256, parallel=1, threads=1, load_on_startup=True),
        "off": ModelSpec(model_path=tiny_model, context_size=256, parallel=1, threads=1, load_on_startup=True,
                         speculation=False)})
    with ModelPool.start(config) as pool:
        for name, expected in (("on", "ngram-simple"), ("off", "none")):
            status, body = post(pool.url + "/completion", {"model": name, "prompt": "a b", "n_predict": 1})
            assert status == 200, body
            assert set(body["generation_settings"]["speculative.types"].split(",")) == {expected}


# ---- end to end on SmolLM2 -----------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(smollm2_model):
    """The default server (speculation on) and one with speculation=False, one slot each."""
    on = LlamaServer.start(ServerConfig(model_path=smollm2_model, threads=1, context_size=2048, parallel=1))
    try:
        off = LlamaServer.start(ServerConfig(model_path=smollm2_model, threads=1, context_size=2048, parallel=1,
                                             speculation=False))
    except BaseException:
        on.stop()
        raise
    yield on, off
    off.stop()
    on.stop()


def _chat(server, messages, **fields):
    status, body = post(server.url + "/v1/chat/completions",
                        {"messages": messages, "temperature": 0, "max_tokens": 160, **fields}, timeout=300)
    assert status == 200, body
    timings = body["timings"]
    return body, timings.get("draft_n", 0), timings.get("draft_n_accepted", 0), timings["predicted_n"]


@pytest.mark.smollm2
def test_requests_run_with_the_default_n_gram_type_or_none_when_switched_off(servers):
    on, off = servers
    for server, expected in ((on, "ngram-simple"), (off, "none")):
        status, body = post(server.url + "/completion", {"prompt": "Hello", "n_predict": 1})
        assert status == 200
        # (the pinned llama.cpp appends a --spec-type to its default list: "none,none")
        assert set(body["generation_settings"]["speculative.types"].split(",")) == {expected}


@pytest.mark.smollm2
def test_the_policy_drafts_on_a_copy_task_and_metrics_count_it(servers):
    on, _ = servers
    before = on.metrics()
    body, drafted, accepted, predicted = _chat(on, COPY)
    after = on.metrics()
    assert drafted > 0, body["timings"]
    assert accepted >= 0.6 * drafted, body["timings"]
    assert after.draft_tokens - before.draft_tokens == drafted
    assert after.draft_accepted - before.draft_accepted == accepted
    assert "harbour office" in body["choices"][0]["message"]["content"]


@pytest.mark.smollm2
def test_the_policy_backs_off_where_nothing_repeats(servers):
    on, _ = servers
    _, drafted, _, predicted = _chat(on, OPEN, max_tokens=256)
    assert predicted > 100
    assert drafted <= 0.1 * predicted


@pytest.mark.smollm2
def test_speculative_n_max_0_turns_drafting_off_for_one_request(servers):
    on, _ = servers
    _, drafted, _, _ = _chat(on, COPY, **{"speculative.n_max": 0})
    assert drafted == 0
    # /completion echoes the request's limits in its generation settings
    status, body = post(on.url + "/completion", {"prompt": "Copy: a b c a b c a b c", "n_predict": 8,
                                                  "speculative.n_max": 3, "speculative.n_min": 2})
    assert status == 200
    assert body["generation_settings"]["speculative.n_max"] == 3
    assert body["generation_settings"]["speculative.n_min"] == 2
    status, _ = post(on.url + "/completion", {"prompt": "x", "n_predict": 1, "speculative.n_max": -1})
    assert status == 400


@pytest.mark.smollm2
def test_a_request_with_logprobs_is_not_speculated(servers):
    on, off = servers
    # cache_prompt off: both servers evaluate the whole prompt the same way (a prompt cache hit
    # re-evaluates its last token alone, whose logits then differ in the last bits)
    fields = {"logprobs": True, "top_logprobs": 3, "max_tokens": 96, "cache_prompt": False}
    body_on, drafted, _, _ = _chat(on, COPY, **fields)
    body_off, _, _, _ = _chat(off, COPY, **fields)
    assert drafted == 0
    assert body_on["choices"][0]["logprobs"] == body_off["choices"][0]["logprobs"]


@pytest.mark.smollm2
def test_grammar_constrained_output_stays_valid_with_speculation(servers):
    on, _ = servers
    record = {"id": 1042, "name": "Grace", "city": "Lima", "score": 81.5, "active": True}
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                               "city": {"type": "string"}, "score": {"type": "number"},
                                               "active": {"type": "boolean"}},
              "required": ["id", "name", "city", "score", "active"], "additionalProperties": False}
    messages = [{"role": "user", "content": "Repeat this JSON record exactly:\n" + json.dumps(record)}]
    for _ in range(2):  # the second time the record is in the slot's cache and history twice
        body, _, _, _ = _chat(on, messages, response_format={"type": "json_schema", "json_schema": {"schema": schema}})
        value = json.loads(body["choices"][0]["message"]["content"])
        assert set(value) == set(schema["required"])
        assert isinstance(value["id"], int) and isinstance(value["active"], bool)
        assert isinstance(value["score"], (int, float)) and isinstance(value["name"], str)
