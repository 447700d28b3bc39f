"""Load model of one vLLM replica under Poisson arrivals: the rate it sustains and its latency at a rate.

Pure: no I/O. Every step cost comes from planner/perf.py (calibrated on shared/calibration/); this module
adds only queueing, in closed form, so that a search over every catalog GPU x layout stays fast.

    max_rate   the saturated throughput of perf.estimate (the running batch at its cap: max_num_seqs, KV
               room or the token budget, whichever binds first) / output_len
    N          mean requests in the replica, from Little's law N = rate x S(N), where S(N) is the time in
               the server at N concurrent requests (own prefill + output_len - 1 steps at batch N)
    ITL at p   one decode step at the p-quantile of the running batch (Poisson around N), plus the prompt
               chunks that ride in that step: prompts arrive at `rate` and each spends `chunks` steps in
               prefill, so a step carries k ~ Poisson(rate x chunks x step) prompt chunks; the p-quantile
               of k sets the ITL a token sees at p (vllm bench serve's ITL percentiles are over tokens)
    TTFT at p  own prefill + half a step + the serving path's fixed cost (as perf.serving_point), plus
               two waits: for the token budget (prompts are prefilled first come first served at the
               budget's prompt-token rate: an M/D/1 queue) and for a running slot once the batch is at its
               cap (M/M/c with c = the cap, Erlang C). Wait quantiles use the exponential tail whose mean is
               the queue's mean wait; the two are added (a slight overestimate).

Why closed form and not only a simulation: a capacity search evaluates hundreds of (GPU, layout, KV dtype)
options at several replica counts each; the closed form costs a few serving-point evaluations per rate.
planner/capacity/simulate.py replays vLLM's scheduler step by step for the finalists (docs/capacity.md).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

from planner.perf import (
    PerfInputs,
    ServingPoint,
    batch_per_replica,
    budget_bound,
    computed_prompt,
    estimate,
    kv_bound,
    prompt_token_ms,
    serving_point,
    step_ms,
    token_ms,
)

UNBOUNDED = 1_000_000  # clients enough to fill any replica


@dataclass(frozen=True)
class Saturation:
    """What one replica does flat out."""

    max_rate: float  # requests/s
    running_cap: int  # sequences running at once over the replica's DP ranks
    limited_by: str  # kv_cache | max_num_seqs | token_budget
    service_ms: float  # time in the server of one request at the cap (no queueing)


@dataclass(frozen=True)
class AtRate:
    """One replica at an offered rate; latencies at the percentile (ms)."""

    rate: float
    utilization: float  # rate / max_rate
    concurrency: float  # mean requests in the replica (running + waiting)
    running: float  # mean running sequences
    itl_mean_ms: float  # mean inter-token latency (tokens/s per user = 1000 / this)
    itl_ms: float  # at the percentile
    ttft_ms: float  # at the percentile
    ttft_base_ms: float  # own prefill + half a step + serving path (no queueing)
    ttft_wait_ms: float  # waits for the token budget and a running slot, at the percentile
    overloaded: bool  # the rate is at or above max_rate: queues grow without bound
    notes: tuple[str, ...] = ()


def service_grid(cap: int) -> list[int]:
    """Concurrencies at which S(n) is evaluated: every n up to 8, then steps of about 12%, and the cap. S is
    smooth in n (a decode step grows linearly with the batch), so it is interpolated in between: a search over
    hundreds of options then costs ~40 serving points per option instead of one per concurrency it visits."""
    grid = list(range(1, min(cap, 8) + 1))
    n = 8
    while n < cap:
        n = min(cap, max(n + 1, round(n * 1.12)))
        grid.append(n)
    return grid


@dataclass
class Replica:
    """Memoised serving points of one configuration (the load model evaluates S(N) at many N)."""

    inp: PerfInputs
    params: dict[str, Any]
    _points: dict[int, ServingPoint] = field(default_factory=dict)
    _services: dict[int, float] = field(default_factory=dict)
    _grid: list[int] = field(default_factory=list)

    def point(self, n: int) -> ServingPoint:
        if n not in self._points:
            self._points[n] = serving_point(replace(self.inp, concurrency=max(1, n)), self.params)
        return self._points[n]

    def grid(self, cap: int) -> list[int]:
        if not self._grid or self._grid[-1] != cap:
            self._grid = service_grid(cap)
        return self._grid

    def service_ms(self, n: float, cap: int | None = None) -> float:
        """Time a request holds a running slot (own prefill to last token) at n concurrent requests: exact at the
        grid's concurrencies (`cap` = the running cap; without it every integer), linear in between."""
        if cap is None:
            lo = max(1, math.floor(n))
            a, b = self._service(lo), self._service(lo + 1)
            return a + (b - a) * max(0.0, n - lo)
        grid = self.grid(cap)
        i = min(len(grid) - 1, max(1, bisect.bisect_left(grid, n)))
        lo, hi = grid[i - 1], grid[i]
        if n <= lo:
            return self._service(lo)
        a, b = self._service(lo), self._service(hi)
        return a + (b - a) * (min(n, hi) - lo) / (hi - lo)

    def _service(self, n: int) -> float:
        if n not in self._services:
            sp = self.point(n)
            self._services[n] = sp.own_ms + (sp.decode_ms / 2 if sp.batch > 1 else 0.0) + \
                (self.inp.output_len - 1) * sp.itl_ms
        return self._services[n]


def saturation(rep: Replica) -> Saturation:
    """The replica flat out: the running batch at its cap, throughput from perf.estimate."""
    inp, params = rep.inp, rep.params
    full = replace(inp, concurrency=UNBOUNDED)
    per_rank = batch_per_replica(full, bool(params["chunked_prefill"]))
    cap = per_rank * inp.dp
    est = estimate(replace(inp, concurrency=cap), params)
    assert est is not None, "saturation() needs a GPU with known bandwidth and FLOPs"
    bounds = {"max_num_seqs": inp.max_num_seqs, "kv_cache": kv_bound(full)}
    if params["chunked_prefill"]:
        bounds["token_budget"] = budget_bound(full)
    limited_by = min(bounds, key=lambda k: (bounds[k], k != "kv_cache"))
    return Saturation(max_rate=est.output_tokens_per_s_total / inp.output_len, running_cap=cap,
                      limited_by=limited_by, service_ms=rep.service_ms(cap, cap))


def poisson_quantile(mean: float, p: float) -> int:
    """Smallest k with P(K <= k) >= p for K ~ Poisson(mean) (normal approximation above a mean of 50)."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, math.ceil(mean + NormalDist().inv_cdf(p) * math.sqrt(mean) - 0.5))
    term = cdf = math.exp(-mean)
    k = 0
    while cdf < p and k < 10_000:
        k += 1
        term *= mean / k
        cdf += term
    return k


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (c servers, offered load in erlangs < c)."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    if servers - offered > 8 * math.sqrt(offered) + 8:  # Halfin-Whitt: far below the knee the wait chance is < 1e-12
        return 0.0
    b = 1.0
    for k in range(1, servers + 1):  # Erlang B by recurrence (stable for thousands of servers)
        b = offered * b / (k + offered * b)
    return servers * b / (servers - offered * (1 - b))


def exp_tail_quantile(p_wait: float, mean_wait_ms: float, p: float) -> float:
    """p-quantile of a wait with P(W > t) = p_wait x exp(-t / theta), theta set by the mean wait."""
    if p_wait <= 1 - p or p_wait <= 0 or mean_wait_ms <= 0:
        return 0.0
    theta = mean_wait_ms / p_wait
    return theta * math.log(p_wait / (1 - p))


def concurrency_at(rep: Replica, rate: float, cap: int, slow: float = 1.0) -> float:
    """Mean requests in service N solving Little's law N = rate x S(N) (S scaled by `slow`), at most `cap`: the
    grid bracket where rate x S(n) - n changes sign, then the exact root of the linear piece in it."""
    k = rate * slow / 1000

    def excess(n: int) -> float:
        return k * rep.service_ms(n, cap) - n

    grid = rep.grid(cap)
    if excess(grid[-1]) >= 0:
        return float(cap)
    if excess(grid[0]) <= 0:  # fewer than one request in service on average: S is the service of one alone
        return k * rep.service_ms(1, cap)
    lo, hi = 0, len(grid) - 1  # excess(grid[lo]) > 0 >= excess(grid[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if excess(grid[mid]) > 0:
            lo = mid
        else:
            hi = mid
    a, b = grid[lo], grid[hi]
    sa, sb = rep.service_ms(a, cap), rep.service_ms(b, cap)
    slope = (sb - sa) / (b - a)  # S(n) = sa + slope (n - a) on the piece: n = k S(n) solved exactly
    denom = 1 - k * slope
    return min(float(b), max(float(a), k * (sa - slope * a) / denom)) if denom > 0 else float(b)


def at_rate(rep: Replica, sat: Saturation, rate: float, percentile: float, slow: float = 1.0) -> AtRate:
    """Latency of one replica at `rate` requests/s, at the `percentile` (0.5 .. 0.999); `slow` scales every step
    time (the calibrated bands' pessimistic and optimistic ends)."""
    inp, params = rep.inp, rep.params
    max_rate = sat.max_rate / slow
    util = rate / max_rate if max_rate > 0 else float("inf")
    running = concurrency_at(rep, rate, sat.running_cap, slow)
    n_run = max(1, math.ceil(running))
    sp = rep.point(n_run)
    notes: list[str] = []
    # ITL: the running batch at the percentile, and the prompt chunks sharing that step
    n_p = min(sat.running_cap, max(1, poisson_quantile(running, percentile)))
    per_rank = math.ceil(n_p / inp.dp)
    step = token_ms(inp, per_rank, sp.ctx, params)  # per output token (a speculative step over its tokens)
    ppt = prompt_token_ms(inp, params) / inp.pp
    room = max(0, inp.max_num_batched_tokens - per_rank)
    new = computed_prompt(inp)  # the prompt's uncached share
    chunk = min(new, room) if params["chunked_prefill"] else new
    chunks = sp.chunks if params["chunked_prefill"] else 1
    in_step = rate / inp.dp * chunks * step * slow / 1000  # prompt chunks expected in one step of a DP rank
    k = poisson_quantile(in_step, percentile)
    prompt_tokens = min(room, k * chunk) if params["chunked_prefill"] else k * new
    itl_p = slow * (step + prompt_tokens * ppt)
    # TTFT: own prefill, half a step, the serving path; then the waits
    base = slow * (sp.own_ms + (sp.decode_ms / 2 if sp.batch > 1 else 0.0)) + params["ttft_overhead_ms"]
    if util >= 1:
        return AtRate(rate=rate, utilization=util, concurrency=float(sat.running_cap), running=float(sat.running_cap),
                      itl_mean_ms=slow * sp.itl_ms, itl_ms=itl_p, ttft_ms=math.inf, ttft_base_ms=base,
                      ttft_wait_ms=math.inf, overloaded=True,
                      notes=("offered rate at or above what one replica sustains: the queue grows without bound",))
    # the token budget's prompt-token rate with the running decodes in each step: an M/D/1 queue of prompts
    full_step = slow * (step_ms(inp, max(1, math.ceil(running / inp.dp)), sp.ctx, params) + room * ppt)
    prompt_ms = new * full_step / room if room else math.inf
    rho_p = rate / inp.dp * prompt_ms / 1000
    if rho_p >= 1:
        budget_wait = math.inf
        notes.append(f"prompts arrive faster than the token budget ({inp.max_num_batched_tokens}) prefills them")
    else:
        budget_wait = exp_tail_quantile(rho_p, rho_p * prompt_ms / (2 * (1 - rho_p)), percentile)
    # a running slot: M/M/c with c = the running cap, each slot held for the service time at the cap
    service = slow * sat.service_ms
    offered = rate * service / 1000
    p_wait = erlang_c(sat.running_cap, offered)
    slot_rate = sat.running_cap / service - rate / 1000  # per ms
    slot_wait = exp_tail_quantile(p_wait, p_wait / slot_rate if slot_rate > 0 else math.inf, percentile)
    wait = budget_wait + slot_wait
    waiting = rate * p_wait / slot_rate / 1000 if p_wait > 0 else 0.0  # Little's law on the mean slot wait
    return AtRate(rate=rate, utilization=util, concurrency=running + waiting, running=running,
                  itl_mean_ms=slow * sp.itl_ms, itl_ms=itl_p, ttft_ms=base + wait, ttft_base_ms=base,
                  ttft_wait_ms=wait, overloaded=math.isinf(wait), notes=tuple(notes))
