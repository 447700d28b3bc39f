"""planner/capacity/load.py: the queueing pieces against textbook values, and the replica model's limits
(an idle replica is one request alone; latency never falls as the rate rises; past max_rate it is overloaded)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from planner.app import plan_perf_inputs, plan_with_context
from planner.capacity.load import (
    Replica,
    at_rate,
    concurrency_at,
    erlang_c,
    exp_tail_quantile,
    poisson_quantile,
    saturation,
)
from planner.perf import decode_step_ms, estimate, prefill_ms
from planner.schemas import PlanRequest


@pytest.fixture(scope="module")
def h100_8b() -> Replica:
    req = PlanRequest.model_validate({"model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "H100", "concurrency": 16,
                                      "input_len": 1000, "output_len": 200})
    resp, ctx = plan_with_context(req)
    return Replica(plan_perf_inputs(resp, ctx), dict(ctx.run.params))


def test_poisson_quantile_matches_the_cdf() -> None:
    # Poisson(0.3): P(0) = e^-0.3 = 0.7408, P(<=1) = 0.7408 * 1.3 = 0.9631
    assert poisson_quantile(0.3, 0.70) == 0
    assert poisson_quantile(0.3, 0.95) == 1
    assert poisson_quantile(0.3, 0.97) == 2
    # Poisson(3): P(<=2) = e^-3 (1 + 3 + 4.5) = 0.4232, P(<=3) = 0.6472
    assert poisson_quantile(3.0, 0.5) == 3
    assert poisson_quantile(0.0, 0.99) == 0
    # normal approximation above a mean of 50: 100 + 1.645 * 10 = 116.4 -> 116 or 117
    assert poisson_quantile(100.0, 0.95) in (116, 117)


def test_erlang_c_textbook_values() -> None:
    assert erlang_c(1, 0.6) == pytest.approx(0.6)  # M/M/1: an arrival waits with probability rho
    # c = 2, a = 1: (a^2/2! * 2/(2-1)) / (1 + a + a^2/2! * 2/(2-1)) = 1 / 3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(256, 100.0) == 0.0  # far below the knee
    assert erlang_c(4, 4.0) == 1.0


def test_exponential_tail_quantile() -> None:
    # P(W > t) = 0.5 exp(-t / 20) (mean 10 ms): the 95th percentile is 20 ln(0.5 / 0.05) = 46.05 ms
    assert exp_tail_quantile(0.5, 10.0, 0.95) == pytest.approx(20 * math.log(10))
    assert exp_tail_quantile(0.04, 10.0, 0.95) == 0.0  # 96% never wait: the 95th percentile waits nothing


def test_an_idle_replica_serves_one_request_alone(h100_8b: Replica) -> None:
    inp, params = h100_8b.inp, h100_8b.params
    sat = saturation(h100_8b)
    a = at_rate(h100_8b, sat, 0.001, 0.5)
    # one sequence: ITL is one decode step at batch 1; the context is mid-generation (1000 + 100 tokens)
    assert a.itl_ms == pytest.approx(decode_step_ms(inp, 1, 1100, params), rel=0.01)
    # TTFT is the prompt prefilled alone (chunks of max_num_batched_tokens) plus the serving path
    chunk = min(inp.input_len, inp.max_num_batched_tokens)
    full, rest = divmod(inp.input_len, chunk)
    own = full * prefill_ms(inp, chunk, inp.input_len, params) + (prefill_ms(inp, rest, inp.input_len, params)
                                                                   if rest else 0.0)
    assert a.ttft_ms == pytest.approx(own + params["ttft_overhead_ms"], rel=0.01)
    assert not a.overloaded and a.utilization < 0.001


def test_max_rate_is_the_saturated_throughput(h100_8b: Replica) -> None:
    sat = saturation(h100_8b)
    inp = h100_8b.inp
    est = estimate(replace(inp, concurrency=sat.running_cap), h100_8b.params)
    assert est is not None
    assert sat.max_rate == pytest.approx(est.output_tokens_per_s_total / inp.output_len)
    # more clients than the cap do not add throughput
    more = estimate(replace(inp, concurrency=sat.running_cap * 4), h100_8b.params)
    assert more is not None and more.output_tokens_per_s_total <= est.output_tokens_per_s_total * 1.0001
    assert sat.limited_by in ("kv_cache", "max_num_seqs", "token_budget")


def test_littles_law_holds_at_the_solved_concurrency(h100_8b: Replica) -> None:
    sat = saturation(h100_8b)
    for rate in (1.0, 5.0, 0.5 * sat.max_rate):
        n = concurrency_at(h100_8b, rate, sat.running_cap)
        assert n == pytest.approx(rate * h100_8b.service_ms(n) / 1000, rel=0.02, abs=0.05)


def test_latency_never_falls_as_the_rate_rises(h100_8b: Replica) -> None:
    sat = saturation(h100_8b)
    prev = None
    for frac in (0.02, 0.1, 0.3, 0.5, 0.7, 0.85, 0.95):
        a = at_rate(h100_8b, sat, frac * sat.max_rate, 0.95)
        if prev is not None:
            assert a.ttft_ms >= prev.ttft_ms - 1e-9 and a.itl_ms >= prev.itl_ms - 1e-9 and a.running >= prev.running
        prev = a
    over = at_rate(h100_8b, sat, 1.2 * sat.max_rate, 0.95)
    assert over.overloaded and math.isinf(over.ttft_ms)


def test_higher_percentiles_are_never_lower(h100_8b: Replica) -> None:
    sat = saturation(h100_8b)
    rate = 0.6 * sat.max_rate
    p50, p95, p99 = (at_rate(h100_8b, sat, rate, p) for p in (0.5, 0.95, 0.99))
    assert p50.ttft_ms <= p95.ttft_ms <= p99.ttft_ms
    assert p50.itl_ms <= p95.itl_ms <= p99.itl_ms


def test_slow_scales_the_step_times(h100_8b: Replica) -> None:
    sat = saturation(h100_8b)
    fast, slow = at_rate(h100_8b, sat, 0.001, 0.5), at_rate(h100_8b, sat, 0.001, 0.5, slow=1.2)
    assert slow.itl_ms == pytest.approx(1.2 * fast.itl_ms, rel=1e-6)
    assert slow.utilization == pytest.approx(1.2 * fast.utilization, rel=1e-6)
