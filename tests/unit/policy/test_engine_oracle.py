"""durable-rules and the reference evaluator agree on the shipped pack over generated facts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.policy import PolicyRun, engine
from planner.policy.facts import normalise_fact
from planner.policy.loader import load_packset

pytestmark = pytest.mark.skipif(not engine.available(), reason="durable_rules not installed (Python 3.13+)")

PACKSET = load_packset(use_env=False)

gpu = st.fixed_dictionaries({
    "family": st.sampled_from(["hopper", "ampere", "ada", "blackwell", "volta"]),
    "memory_gib": st.floats(8, 200), "fp8_supported": st.booleans(), "count": st.integers(1, 8),
})
request = st.fixed_dictionaries({
    "mode": st.sampled_from(["latency", "balanced", "throughput"]), "vllm_minor": st.integers(8, 40),
    "model_max_len": st.integers(2048, 131072), "max_model_len": st.integers(0, 131072),
    "concurrency": st.integers(1, 512), "vllm_version": st.just("0.33.0"),
})
model = st.fixed_dictionaries({
    "quantization": st.sampled_from(["none", "fp8", "awq", "gptq", "compressed-tensors", "mxfp4", "modelopt_fp4"]),
    "weight_bits": st.sampled_from([4.0, 8.0]),
})
candidate = st.fixed_dictionaries({
    "tensor_parallel_size": st.sampled_from([1, 2, 4, 8]), "pipeline_parallel_size": st.sampled_from([1, 2]),
    "data_parallel_size": st.integers(1, 8), "kv_cache_dtype": st.sampled_from(["auto", "fp8"]),
    "fits": st.booleans(), "weights_fit": st.booleans(), "kv_pressure": st.floats(0, 5),
    "weights_fraction": st.floats(0, 1.2), "max_fitting_model_len": st.integers(0, 131072),
    "is_min_fitting_tp": st.booleans(), "is_max_tp": st.booleans(), "is_min_weights_fit_tp": st.booleans(),
    "is_baseline_kv": st.booleans(), "is_selected_layout": st.booleans(), "is_selected": st.booleans(),
})


def firings(evaluator: str, facts: list[dict]) -> list[tuple]:
    run = PolicyRun(PACKSET, evaluator=evaluator)
    for stage in ("baseline", "sizing", "recommend"):
        run.run_stage(stage, facts)
    return sorted((f["rule"], tuple(sorted(f["matched"].items()))) for s in run.stages.values() for f in s.firings)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gpu, request, model, st.lists(candidate, min_size=0, max_size=4))
def test_engine_matches_reference(g: dict, r: dict, m: dict, cands: list[dict]) -> None:
    """Same firings (as a multiset) from durable-rules and from the pure-Python oracle."""
    facts = [normalise_fact("gpu", "0", g), normalise_fact("request", "0", r), normalise_fact("model", "0", m)]
    facts += [normalise_fact("candidate", f"c{i}", c) for i, c in enumerate(cands)]
    assert firings("durable", facts) == firings("reference", facts)


def test_float_flush_keeps_engine_happy() -> None:
    """Tiny floats (which Python prints as 1e-05, rejected by durable's parser) are flushed to 0.0."""
    fact = normalise_fact("candidate", "x", {"kv_pressure": 1e-05, "weights_fraction": 0.5})
    assert fact["kv_pressure"] == 0.0
    assert firings("durable", [fact]) == firings("reference", [fact])


def test_many_evaluations_with_unhandled_facts_do_not_leak_sids() -> None:
    """1100 evaluations (past the 1024 live-sid limit) where no fact is accepted, then 1100 where some are."""
    from planner.policy.compiler import compile_rules

    rules = compile_rules(PACKSET.rules, "sizing", PACKSET.param_values())
    stray = normalise_fact("cluster", "0", {"gpus": 1})  # no sizing rule looks at clusters
    for _ in range(1100):
        assert engine.evaluate(rules, [stray]) == []
    heavy = normalise_fact("candidate", "c", {"weights_fraction": 0.99})
    for _ in range(1100):
        assert len(engine.evaluate(rules, [stray, heavy])) == 1
