"""The scheduler simulation (planner/capacity/simulate.py) against hand-derived expectations, queueing laws and a
literal step-by-step transcription of vLLM V1's schedule() loop.

Configuration: Llama-3.1-8B-Instruct on one H100 (input 1000, output 200), as the planner plans it. Expected
values are computed here from planner/perf.py's cost functions as the simulation's docstring says it uses
them; none is a copy of the simulation's output.
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import pytest

from planner import perf
from planner.app import plan_perf_inputs, plan_with_context
from planner.capacity.simulate import SimResult, simulate
from planner.perf import PerfInputs
from planner.schemas import PlanRequest


@pytest.fixture(scope="module")
def llama8() -> tuple[PerfInputs, dict[str, Any]]:
    req = PlanRequest.model_validate({"model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "H100", "concurrency": 32,
                                      "input_len": 1000, "output_len": 200})
    resp, ctx = plan_with_context(req)
    inp = plan_perf_inputs(resp, ctx)
    assert inp.input_len == 1000 and inp.output_len == 200 and inp.max_num_batched_tokens >= 1000
    return inp, ctx.run.params


def _saturated_rps(inp: PerfInputs, params: dict[str, Any]) -> float:
    """perf.estimate's closed-loop throughput with max_num_seqs clients (the batch at its cap), in requests/s."""
    est = perf.estimate(replace(inp, concurrency=inp.max_num_seqs), params)
    assert est is not None
    return est.output_tokens_per_s_total / inp.output_len


def test_low_rate_is_one_sequence_at_a_time(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    """At 0.05 req/s a request arrives every 20 s on average and is served in ~1.5 s, so most find the replica
    idle: the 1000-token prompt (within the 8192-token budget) runs in one prefill-only step, costing
    prefill_ms(1000 tokens of 1000-token prompts); the first token comes at its end, so TTFT = that +
    ttft_overhead_ms. Then 199 decode steps of batch 1, contexts 1001 .. 1199: each token's gap is
    decode_step_ms(batch 1, ctx), between its values at contexts 1000 and 1200."""
    inp, params = llama8
    r = simulate(inp, params, 0.05, requests=200, warmup=10)
    assert r.requests == 200 and not r.saturated and r.preemptions == 0
    ttft = perf.prefill_ms(inp, 1000, 1000, params) + params["ttft_overhead_ms"]
    assert r.ttft_ms[50] == pytest.approx(ttft, rel=0.01)
    lo, hi = (perf.decode_step_ms(inp, 1, c, params) for c in (1000, 1200))
    assert 0.98 * lo <= r.itl_ms[50] <= 1.02 * hi
    assert r.mean_running < 0.2  # busy ~1.5 s of every 20


def test_slow_scales_step_times(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    """slow=2 doubles every step; the serving path's fixed cost is not a step and stays."""
    inp, params = llama8
    base = simulate(inp, params, 0.05, requests=200, warmup=10)
    slow = simulate(inp, params, 0.05, requests=200, warmup=10, slow=2.0)
    assert slow.itl_ms[50] == pytest.approx(2 * base.itl_ms[50], rel=0.02)
    overhead = params["ttft_overhead_ms"]
    assert slow.ttft_ms[50] - overhead == pytest.approx(2 * (base.ttft_ms[50] - overhead), rel=0.02)


@pytest.mark.parametrize("rate", [10.0, 18.0])
def test_littles_law(llama8: tuple[PerfInputs, dict[str, Any]], rate: float) -> None:
    """Requests in the replica (running + waiting) = throughput x time in the replica; a request is in it from
    arrival to its last token: TTFT less the serving path's fixed cost, plus output_len - 1 gaps (the mean ITL is
    over tokens, and every request has output_len - 1 of them)."""
    inp, params = llama8
    r = simulate(inp, params, rate)
    in_system_s = (r.ttft_ms[0] - params["ttft_overhead_ms"] + (inp.output_len - 1) * r.itl_ms[0]) / 1000
    assert r.mean_running + r.mean_waiting == pytest.approx(r.throughput_rps * in_system_s, rel=0.04)


@pytest.mark.parametrize("share", [0.25, 0.7])
def test_throughput_follows_the_offered_rate_below_saturation(llama8: tuple[PerfInputs, dict[str, Any]],
                                                             share: float) -> None:
    inp, params = llama8
    rate = share * _saturated_rps(inp, params)
    r = simulate(inp, params, rate)
    assert not r.saturated
    assert r.throughput_rps == pytest.approx(rate, rel=0.05)
    assert r.output_tokens_per_s == pytest.approx(rate * inp.output_len, rel=0.05)
    assert r.mean_waiting < 1.0


def test_three_times_the_saturated_rate_saturates(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    """Flat out, the simulated replica serves about what perf.estimate's closed loop at max_num_seqs clients does
    (measured: 5-7% below it: preemptions, whole KV blocks, waves of requests admitted together); the queue grows."""
    inp, params = llama8
    cap = _saturated_rps(inp, params)
    r = simulate(inp, params, 3 * cap)
    assert r.saturated
    assert r.throughput_rps == pytest.approx(cap, rel=0.25)
    assert r.output_tokens_per_s == pytest.approx(cap * inp.output_len, rel=0.25)
    assert r.mean_waiting > r.mean_running
    assert r.ttft_ms[99] > 10_000  # the queue, not the prefill


def test_same_seed_same_result(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    inp, params = llama8
    a = simulate(inp, params, 12.0, requests=500, seed=3)
    assert a == simulate(inp, params, 12.0, requests=500, seed=3)
    assert a.ttft_ms != simulate(inp, params, 12.0, requests=500, seed=4).ttft_ms


def test_data_parallel_ranks_split_the_rate(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    """Two DP ranks of a dense model at 2r: each rank sees r (same arrival gaps for the same seed), so latencies
    are one rank's at r and the engine's throughput and occupancy are twice one rank's."""
    inp, params = llama8
    one = simulate(inp, params, 8.0, requests=500)
    two = simulate(replace(inp, dp=2), params, 16.0, requests=500)
    assert two.ttft_ms == one.ttft_ms and two.itl_ms == one.itl_ms
    assert two.throughput_rps == pytest.approx(2 * one.throughput_rps)
    assert two.mean_running == pytest.approx(2 * one.mean_running)


def test_kv_starved_replica_queues_and_finishes(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    """4,000 KV tokens hold three 1200-token requests: the replica queues (and may preempt) but every measured
    request completes."""
    inp, params = llama8
    r = simulate(replace(inp, kv_cache_tokens=4000), params, 5.0, requests=300, warmup=30)
    assert r.requests == 300 and r.saturated and r.mean_running <= 4
    assert r.throughput_rps < 5.0 * 0.95


def test_kv_pressure_preempts(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    """Short requests (17 + 33 tokens, up to 4 blocks each) on 50 blocks with 64 sequences allowed: admission
    fills the cache with prompts, growth then runs out of blocks and the newest sequences are preempted."""
    inp, params = llama8
    tight = replace(inp, input_len=17, output_len=33, kv_cache_tokens=800, max_num_seqs=64, max_num_batched_tokens=64)
    r = simulate(tight, params, 200.0, requests=300, warmup=50)
    assert r.requests == 300 and r.preemptions > 0


def test_one_request_fills_the_cache_exactly(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    """1200 tokens = 75 blocks: with exactly 75 the replica serves one request at a time; with 74 vLLM would refuse
    to start (a max-length request does not fit), and so does the simulation."""
    inp, params = llama8
    r = simulate(replace(inp, kv_cache_tokens=1200), params, 0.5, requests=50, warmup=5)
    assert r.requests == 50 and r.mean_running <= 1.0
    with pytest.raises(ValueError, match="does not fit the KV cache"):
        simulate(replace(inp, kv_cache_tokens=1199), params, 0.5)


def test_bad_arguments(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    inp, params = llama8
    with pytest.raises(ValueError):
        simulate(inp, params, 0.0)
    with pytest.raises(ValueError, match="max_num_seqs"):
        simulate(replace(inp, max_num_batched_tokens=100, max_num_seqs=256), params, 1.0)


def test_output_len_one_has_no_inter_token_gaps(llama8: tuple[PerfInputs, dict[str, Any]]) -> None:
    inp, params = llama8
    r = simulate(replace(inp, output_len=1), params, 5.0, requests=200, warmup=20)
    assert r.requests == 200 and r.itl_ms[50] == 0.0


# --- a literal transcription of vLLM's schedule() loop, one step and one request at a time -----------------------


@dataclass(eq=False)
class _Req:
    arrival: float
    measured: bool
    prompt: int
    generated: int = 0
    computed: int = 0
    blocks: int = 0
    last_token: float = 0.0


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _reference(inp: PerfInputs, params: dict[str, Any], rate: float, requests: int, warmup: int, seed: int = 0,
               slow: float = 1.0) -> tuple[list[float], list[float], int]:
    """TTFTs, ITL gaps and preemptions of the measured requests, scheduling as vllm/v1/core/sched/scheduler.py
    does: running requests in order (each preempting the newest running request until its blocks fit), then
    waiting ones; with chunked prefill off, whole prompts first in a step of their own (V0). Same warm-up and
    arrivals as simulate() (its docstring), but every request is stepped explicitly and decode_step_ms is called
    at each step's exact mean context."""
    rng = random.Random(seed)
    gap = 1000.0 * inp.dp / rate
    next_arrival = rng.expovariate(1.0) * gap
    free = inp.kv_cache_tokens // 16
    waiting: deque[_Req] = deque()
    running: list[_Req] = []
    now, t_start = 0.0, (0.0 if warmup == 0 else None)
    measured_arrived = measured_done = completed = preemptions = 0
    ttfts: list[float] = []
    itls: list[float] = []
    per_prompt_token = perf.prompt_token_ms(inp, params) / inp.pp
    while True:
        while next_arrival <= now:
            m = t_start is not None and next_arrival > t_start and measured_arrived < requests
            measured_arrived += m
            waiting.append(_Req(next_arrival, m, inp.input_len))
            next_arrival += rng.expovariate(1.0) * gap
        if not running and not waiting:
            now = next_arrival
            continue
        budget = inp.max_num_batched_tokens
        scheduled: list[tuple[_Req, int]] = []
        preempted = False
        if not params["chunked_prefill"]:
            while waiting and len(running) < inp.max_num_seqs:
                r = waiting[0]
                if (scheduled and r.prompt > budget) or _cdiv(r.prompt, 16) > free:
                    break
                waiting.popleft()
                running.append(r)
                r.blocks = _cdiv(r.prompt, 16)
                free -= r.blocks
                scheduled.append((r, r.prompt))
                budget -= r.prompt
                if budget <= 0:
                    break
        i = len(running) if scheduled else 0
        while i < len(running) and budget > 0:
            r = running[i]
            n = min(r.prompt - r.computed, budget) if r.computed < r.prompt else 1
            need = _cdiv(r.computed + n, 16) - r.blocks
            while need > free:
                victim = running.pop()
                free += victim.blocks
                victim.blocks = victim.computed = 0
                victim.prompt = inp.input_len + victim.generated
                waiting.appendleft(victim)
                preempted = True
                preemptions += t_start is not None
                if victim is r:
                    break
            if r not in running:
                break
            r.blocks += need
            free -= need
            scheduled.append((r, n))
            budget -= n
            i += 1
        if params["chunked_prefill"] and not preempted:
            while waiting and budget > 0 and len(running) < inp.max_num_seqs:
                r = waiting[0]
                n = min(r.prompt, budget)
                if _cdiv(n, 16) > free:
                    break
                waiting.popleft()
                running.append(r)
                r.blocks = _cdiv(n, 16)
                free -= r.blocks
                scheduled.append((r, n))
                budget -= n
        decodes = [r for r, _ in scheduled if r.computed >= r.prompt]
        prompt_tokens = sum(n for r, n in scheduled if r.computed < r.prompt)
        if decodes:
            ctx = sum(r.computed + 1 for r in decodes) / len(decodes)
            now += slow * (perf.decode_step_ms(inp, len(decodes), ctx, params) + prompt_tokens * per_prompt_token)
        else:
            now += slow * perf.prefill_ms(inp, prompt_tokens, inp.input_len, params)
        stop = False
        for r, n in scheduled:
            prefilling = r.computed < r.prompt
            r.computed += n
            if prefilling and r.computed < r.prompt:
                continue
            r.generated += 1
            if r.measured:
                if r.generated == 1:
                    ttfts.append(now - r.arrival + params["ttft_overhead_ms"])
                else:
                    itls.append(now - r.last_token)
            r.last_token = now
            if r.generated == inp.output_len:
                running.remove(r)
                free += r.blocks
                completed += 1
                measured_done += r.measured
                if t_start is None:
                    t_start = now if completed == warmup else None
                elif measured_done == requests:
                    stop = True
        if stop:
            return ttfts, itls, preemptions


def _percentile(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1]


@pytest.mark.parametrize(("name", "changes", "rate", "chunked", "slow"), [
    ("near saturation", {}, 25.0, True, 1.0),
    ("KV-bound", {"kv_cache_tokens": 60_000}, 20.0, True, 1.0),
    ("chunked prompts, preemptions", {"max_num_batched_tokens": 512, "max_num_seqs": 128, "kv_cache_tokens": 20_000},
     8.0, True, 1.0),
    ("tiny requests", {"input_len": 17, "output_len": 33, "kv_cache_tokens": 800, "max_num_seqs": 64,
                       "max_num_batched_tokens": 64}, 200.0, True, 1.0),
    ("pipeline, slow", {"pp": 2}, 15.0, True, 2.0),
    ("V0 near saturation", {}, 25.0, False, 1.0),
    ("V0 KV-bound", {"max_num_batched_tokens": 4096, "kv_cache_tokens": 20_000}, 10.0, False, 1.0),
])
def test_matches_a_literal_replay_of_the_scheduler(llama8: tuple[PerfInputs, dict[str, Any]], name: str,
                                                   changes: dict[str, int], rate: float, chunked: bool,
                                                   slow: float) -> None:
    """The event-skipping simulation equals the step-by-step replay: same TTFTs (so the same schedule), same
    mean ITL and preemptions; its ITL percentiles summarise runs of decode steps (within 0.5%)."""
    inp, params = llama8
    inp = replace(inp, **changes)
    params = dict(params, chunked_prefill=chunked)
    ttfts, itls, preemptions = _reference(inp, params, rate, 150, 30, slow=slow)
    r: SimResult = simulate(inp, params, rate, requests=150, warmup=30, slow=slow)
    assert r.requests == len(ttfts) == 150
    assert r.ttft_ms[0] == pytest.approx(statistics.fmean(ttfts), rel=1e-9)
    for p in (50, 90, 99):
        assert r.ttft_ms[p] == pytest.approx(_percentile(ttfts, p), rel=1e-9)
    assert r.itl_ms[0] == pytest.approx(statistics.fmean(itls), rel=1e-9)
    assert r.itl_ms[50] == pytest.approx(statistics.median(itls), rel=0.005)
    assert r.preemptions == preemptions
    assert r.mean_running > 0
