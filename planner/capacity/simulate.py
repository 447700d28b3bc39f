"""Step-level simulation of vLLM V1's scheduler for one replica under Poisson arrivals.

Pure: no I/O; the only randomness is a `random.Random(seed)`. Every cost comes from planner/perf.py
(calibrated on shared/calibration/): this module adds only the scheduler, so that the closed-form load
model (planner/capacity/load.py) can be checked on the few finalist options of a capacity search.

What it mirrors (vllm/v1/core/sched/scheduler.py, `schedule()`):
    step       a token budget of max_num_batched_tokens; running requests first, in admission order (each
               decode takes 1 token, a request still prefilling takes min(rest of its prompt, budget left));
               then waiting requests first come first served while fewer than max_num_seqs run, budget is
               left and the KV cache has blocks for their first chunk (none are admitted in a step that
               preempted). With chunked prefill off (`params["chunked_prefill"]`, the V0 engine) a step
               either prefills whole prompts (decodes pause) or decodes.
    KV cache   kv_cache_tokens / 16 blocks of 16 tokens (vLLM's default block size); a request holds
               ceil(tokens computed / 16) blocks, allocated as they fill. When the running requests' next
               tokens need more blocks than are free, the newest running request is preempted (recompute):
               its blocks are freed and it goes back to the front of the queue; its tokens generated so far
               are kept, and its prompt plus them are prefilled again when it is readmitted (the token that
               prefill emits closes an ITL gap that includes the whole preemption). vLLM refuses to start
               when one max-length request does not fit the cache; simulate() raises ValueError likewise
               (input_len + output_len tokens above the cache), so no request can wait forever.
    cost       a step with decodes: slow x (token_ms(decodes, mean context) + prompt tokens x
               prompt_token_ms / pp); a prefill-only step: slow x prefill_ms(prompt tokens). token_ms (a decode
               step, or with speculative decoding a speculative step per emitted token) is linear in the
               context (KV reads, attention FLOPs), so it is evaluated once per batch size at both ends of the
               context range [input, input + output] and interpolated.
    tokens     a request's first token comes at the end of the step that completes its prompt (TTFT adds the
               serving path's fixed cost, params["ttft_overhead_ms"]); each later token at the end of a step
               that decodes it. ITL percentiles are over tokens, as vllm bench serve's: each step is recorded
               once, weighted by the measured tokens it emitted (a run of identical decode steps as 4 points
               spanning its durations); a preempted request's first gap after readmission on its own.
    data par.  with dp ranks (in-engine DP, lock-stepped MoE included) one rank is simulated at rate / dp,
               vLLM's DP load balancer spreading requests evenly; throughput, mean running/waiting and
               preemptions are the engine's (x dp), latencies one rank's.

Warm-up and measurement: the measured window opens at the `warmup`-th completion (the batch has filled
by then) and the `requests` arrivals after it are measured; arrivals continue at the same rate until the
last of them completes, which closes the window (no drain at the end). Throughput, tokens/s, mean running
and waiting and preemptions are over the window; TTFT and ITL over the measured requests' tokens.
`saturated`: fewer than 95% of the requests that arrived in the window completed in it (the queue grew
through the run).

Flat out, fixed lengths make the running batch move in waves (a cohort admitted together finishes together),
so over 2,000 measured requests throughput is good to a few percent (Llama-3.1-8B on an H100 at 3x its
saturated rate: 20.4 to 21.1 req/s by seed and window length, 20.8 over 30,000, vs 22.2 from perf.estimate's
closed loop at max_num_seqs clients).

Speed: between events (an arrival that can be admitted, a finish, a KV block shortfall) a run of pure
decode steps is advanced at once, and decoding requests live in a heap keyed by the step they finish at,
with their contexts and KV-block phases summed incrementally: no per-sequence Python work per step.
Measured on the 2-core development VM (pure Python; a bare 10^6-iteration loop takes 0.2 s there),
Llama-3.1-8B on one H100, input 1000, output 200, 2,200 requests (2,000 + 200 warm-up): ~0.05 s at ~180
running (~45,000 requests/s), ~0.04 s at 0.05 req/s (one sequence at a time, 440,000 decode steps),
~0.1 s at ~9 running (the slowest: short runs between arrivals), ~0.06-0.09 s at 3x the saturated rate
(~390 running, preempting).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from planner.perf import PerfInputs, computed_prompt, prefill_ms, prompt_token_ms, token_ms

BLOCK = 16  # tokens per KV block (vLLM's default --block-size)
PERCENTILES = (50, 90, 95, 99)
SATURATED_SHARE = 0.95  # completions / arrivals in the window below this: the queue grew


@dataclass(frozen=True)
class SimResult:
    requests: int  # completed requests measured (after warm-up)
    throughput_rps: float  # completed requests per second over the measured window
    output_tokens_per_s: float
    ttft_ms: dict[int, float]  # percentile -> ms, for 50, 90, 95, 99 (and mean under key 0)
    itl_ms: dict[int, float]  # per-token inter-token latency percentiles (as vllm bench serve's ITL), same keys
    mean_running: float  # time-averaged number of running (scheduled) sequences
    mean_waiting: float
    saturated: bool  # the waiting queue grew through the run (offered rate above what it serves)
    preemptions: int


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _percentiles(values: list[float]) -> dict[int, float]:
    """Linear-interpolated percentiles (numpy's default, which vllm bench serve uses) and the mean under 0."""
    if not values:
        return {0: math.nan, **{p: math.nan for p in PERCENTILES}}
    xs = sorted(values)
    out = {0: sum(xs) / len(xs)}
    for p in PERCENTILES:
        pos = (len(xs) - 1) * p / 100
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        out[p] = xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
    return out


def _weighted_percentiles(values: list[float], weights: list[float]) -> dict[int, float]:
    """Percentiles of values carrying weights (tokens): the smallest value whose cumulative weight reaches p%."""
    total = sum(weights)
    if total <= 0:  # no token after the first (output_len 1): 0, as vllm bench serve reports it
        return {0: 0.0, **{p: 0.0 for p in PERCENTILES}}
    pairs = sorted(zip(values, weights, strict=True))
    out = {0: sum(v * w for v, w in pairs) / total}
    targets = iter((p, p / 100 * total) for p in PERCENTILES)
    p, target = next(targets)
    cum = 0.0
    for v, w in pairs:
        cum += w
        while cum >= target - 1e-9 * total:
            out[p] = v
            nxt = next(targets, None)
            if nxt is None:
                return out
            p, target = nxt
    for q in PERCENTILES:  # rounding left the top percentiles unset: the largest value
        out.setdefault(q, pairs[-1][0])
    return out


def _demand(phase: list[int], t0: int, k: int) -> int:
    """KV blocks the decoding requests claim over ticks t0 .. t0+k-1: a request whose computed tokens
    (its phase + tick) are a multiple of 16 needs a new block for the next one."""
    full, rest = divmod(k, BLOCK)
    total = sum(phase) * full
    t = t0 + full * BLOCK
    for i in range(rest):
        total += phase[(-(t + i)) % BLOCK]
    return total


def _ticks_within(phase: list[int], decodes: int, t0: int, free: int) -> int:
    """Most consecutive ticks from t0 whose block demand fits in `free` blocks (any 16 ticks claim `decodes`)."""
    full = free // decodes
    n, left = BLOCK * full, free - decodes * full
    while True:  # left < decodes: ends within 16 ticks
        need = phase[(-(t0 + n)) % BLOCK]
        if need > left:
            return n
        left -= need
        n += 1


def simulate(inp: PerfInputs, params: dict[str, Any], rate: float, *, requests: int = 2000, warmup: int = 200,
             seed: int = 0, slow: float = 1.0) -> SimResult:
    """Replay vLLM's scheduler step by step for one replica at `rate` requests/s (Poisson arrivals, fixed
    lengths inp.input_len / inp.output_len); `slow` multiplies every step time. See the module docstring."""
    if rate <= 0 or requests < 1 or warmup < 0 or slow <= 0:
        raise ValueError("simulate needs rate > 0, requests >= 1, warmup >= 0 and slow > 0")
    # A prefix-cache hit is neither computed nor given new blocks (the cached prefix's blocks are shared), so a
    # request enters the scheduler with its uncached share only.
    in_len, out_len = computed_prompt(inp), inp.output_len
    budget, max_seqs = inp.max_num_batched_tokens, inp.max_num_seqs
    blocks_total = inp.kv_cache_tokens // BLOCK
    if _cdiv(inp.input_len + out_len, BLOCK) > blocks_total:
        raise ValueError(f"one request of {inp.input_len + out_len} tokens does not fit the KV cache of "
                         f"{inp.kv_cache_tokens} tokens ({blocks_total} blocks of {BLOCK}): vLLM would not start")
    if budget < max_seqs:
        raise ValueError(f"max_num_batched_tokens {budget} < max_num_seqs {max_seqs}: vLLM would not start")
    chunked = bool(params["chunked_prefill"])
    dp = max(1, inp.dp)
    mean_gap = 1000.0 * dp / rate  # ms between arrivals at one rank
    overhead = float(params["ttft_overhead_ms"])
    ppt = slow * prompt_token_ms(inp, params) / inp.pp
    c_lo, c_hi = in_len, in_len + max(1, out_len)
    lines: dict[int, tuple[float, float]] = {}  # decodes -> (a, b): one step = a + b x mean context (x slow)
    prefills: dict[int, float] = {}  # prompt tokens -> a prefill-only step (x slow)

    def line(n: int) -> tuple[float, float]:
        ab = lines.get(n)
        if ab is None:
            lo, hi = token_ms(inp, n, c_lo, params), token_ms(inp, n, c_hi, params)  # per emitted token
            b = (hi - lo) / (c_hi - c_lo)
            ab = lines[n] = (slow * (lo - b * c_lo), slow * b)
        return ab

    def prefill_step(tokens: int) -> float:
        ms = prefills.get(tokens)
        if ms is None:
            ms = prefills[tokens] = slow * prefill_ms(inp, tokens, in_len, params)
        return ms

    rng = random.Random(seed)
    # per request, indexed by arrival order
    arrived: list[float] = []
    measured: list[bool] = []
    gen: list[int] = []  # tokens emitted (synced when it leaves the decoders)
    key: list[int] = []  # decoding: computed tokens - tick
    gbase: list[int] = []  # decoding: emitted tokens - tick
    joined: list[float] = []  # when it last became a decoder
    last_emit: list[float] = []
    join_no: list[int] = []  # the heap entry that is current

    waiting: deque[int] = deque()
    running: dict[int, None] = {}  # admission order; vLLM preempts the last
    heap: list[tuple[int, int, int]] = []  # (finish tick, join number, request)
    phase = [0] * BLOCK  # decoders by key mod 16
    decodes = dec_meas = sum_key = 0
    pf, pf_done, pf_total = -1, 0, 0  # the request whose prompt is part-way through (at most one)
    used = 0  # KV blocks held
    tick = 0  # index of the next decode step
    now, last_dec_end = 0.0, 0.0
    joins: dict[int, float] = {}  # requests that became decoders since the last decode step
    next_arrival = rng.expovariate(1.0) * mean_gap
    joins_no = 0

    t_start: float | None = 0.0 if warmup == 0 else None
    t_end = 0.0
    completed = meas_arrived = meas_done = 0
    win_done = win_arrived = win_tokens = preemptions = 0
    run_area = wait_area = 0.0
    ttfts: list[float] = []
    itl_v: list[float] = []
    itl_w: list[float] = []

    def itl_segment(first: float, last: float, steps: int, tokens: int) -> None:
        """`steps` consecutive steps whose durations go linearly from first to last, `tokens` measured each."""
        m = min(steps, 4)
        for i in range(m):
            itl_v.append(first + (last - first) * (i + 0.5) / m)
            itl_w.append(steps * tokens / m)

    def pull_arrivals(until: float) -> None:
        nonlocal next_arrival, meas_arrived, win_arrived, wait_area
        while next_arrival <= until:
            rid = len(arrived)
            is_meas = t_start is not None and next_arrival > t_start and meas_arrived < requests
            meas_arrived += is_meas
            arrived.append(next_arrival)
            measured.append(is_meas)
            gen.append(0)
            key.append(0)
            gbase.append(0)
            joined.append(0.0)
            last_emit.append(next_arrival)
            join_no.append(-1)
            waiting.append(rid)
            if t_start is not None and next_arrival > t_start:
                win_arrived += 1
                wait_area += until - next_arrival
            next_arrival += rng.expovariate(1.0) * mean_gap

    def complete(end: float) -> bool:
        """Count one completion at `end`; True when the last measured request is done."""
        nonlocal completed, t_start, win_done
        completed += 1
        if t_start is None:
            if completed == warmup:
                t_start = end
            return False
        win_done += 1
        return meas_done == requests

    while True:
        if next_arrival <= now:
            pull_arrivals(now)
        if not running and not waiting:
            now = next_arrival
            continue
        in_window = t_start is not None
        free = blocks_total - used
        work: list[tuple[int, int, int, int]] = []  # (request, computed before, chunk, prompt total)
        preempted = False
        decode_step = True
        need = prompt_tokens = 0
        budget_left = budget
        if not chunked:  # V0: whole prompts first, in a step of their own
            while waiting and len(running) < max_seqs:
                rid = waiting[0]
                total = in_len + gen[rid]
                if (work and total > budget_left) or _cdiv(total, BLOCK) + need > free:
                    break
                waiting.popleft()
                running[rid] = None
                work.append((rid, 0, total, total))
                prompt_tokens += total
                need += _cdiv(total, BLOCK)
                budget_left -= total
                if budget_left <= 0:
                    break
            decode_step = not work
        if decode_step and decodes:
            need += phase[(-tick) % BLOCK]
        if chunked and pf >= 0:
            chunk = min(pf_total - pf_done, budget - decodes)
            if chunk > 0:
                need += _cdiv(pf_done + chunk, BLOCK) - _cdiv(pf_done, BLOCK)
                work.append((pf, pf_done, chunk, pf_total))
                prompt_tokens += chunk
        while need > free:  # preempt the newest running request until the step's blocks fit
            victim, _ = running.popitem()
            preempted = True
            preemptions += in_window
            if victim == pf:
                if work and work[-1][0] == pf:
                    _, done, chunk, _ = work.pop()
                    prompt_tokens -= chunk
                    need -= _cdiv(done + chunk, BLOCK) - _cdiv(done, BLOCK)
                used -= _cdiv(pf_done, BLOCK)
                pf = -1
            else:
                c = key[victim] + tick
                if c % BLOCK == 0:
                    need -= 1
                used -= _cdiv(c, BLOCK)
                decodes -= 1
                dec_meas -= measured[victim]
                sum_key -= key[victim]
                phase[key[victim] % BLOCK] -= 1
                gen[victim] = gbase[victim] + tick
                last_emit[victim] = max(joined[victim], last_dec_end)
                join_no[victim] = -1
                joins.pop(victim, None)
            waiting.appendleft(victim)
            free = blocks_total - used
        if chunked and not preempted:
            budget_left = budget - decodes - prompt_tokens
            while waiting and budget_left > 0 and len(running) < max_seqs:
                rid = waiting[0]
                total = in_len + gen[rid]
                chunk = min(total, budget_left)
                blocks = _cdiv(chunk, BLOCK)
                if blocks + need > free:
                    break
                waiting.popleft()
                running[rid] = None
                work.append((rid, 0, chunk, total))
                prompt_tokens += chunk
                need += blocks
                budget_left -= chunk
        # the step (or, with no prompt work, a run of identical decode steps)
        k = 1
        if decode_step and decodes:
            a, b = line(decodes)
            ctx0 = sum_key / decodes + tick + 1  # mean context the first step attends to
            first = a + b * ctx0
            if not work and not preempted:
                while heap and join_no[heap[0][2]] != heap[0][1]:
                    heapq.heappop(heap)
                k = heap[0][0] - tick + 1
                if not waiting and len(running) < max_seqs and decodes < budget:  # an arrival would be admitted
                    gap = next_arrival - now
                    if gap > first:
                        # smallest n with n x first + b x n(n-1)/2 >= gap
                        lin = first - b / 2
                        n = (math.ceil(gap / lin) if b <= 1e-12 else
                             math.ceil((-lin + math.sqrt(lin * lin + 2 * b * gap)) / b))
                        while n > 1 and (n - 1) * first + b * (n - 1) * (n - 2) / 2 >= gap:
                            n -= 1
                        while n * first + b * n * (n - 1) / 2 < gap:
                            n += 1
                        k = min(k, n)
                    else:
                        k = 1
                if k > 1 and decodes * _cdiv(k - 1, BLOCK) > free - need:  # blocks may run out first
                    k = min(k, 1 + _ticks_within(phase, decodes, tick + 1, free - need))
            dt = k * first + b * k * (k - 1) / 2 + prompt_tokens * ppt
            used += _demand(phase, tick, k) if k > 1 else phase[(-tick) % BLOCK]
        else:
            assert prompt_tokens > 0, "a step with nothing to do"
            dt = prefill_step(prompt_tokens)
        end = now + dt
        if in_window:
            run_area += len(running) * dt
            wait_area += len(waiting) * dt
        # tokens of the decoders: gaps of the first step, then the rest of the run
        if decode_step and decodes:
            first_end = now + first + prompt_tokens * ppt
            joined_meas = 0
            for rid, t in joins.items():
                if measured[rid]:
                    itl_v.append(first_end - t)
                    itl_w.append(1.0)
                    joined_meas += 1
            if dec_meas > joined_meas:
                itl_v.append(first_end - last_dec_end)
                itl_w.append(dec_meas - joined_meas)
            joins.clear()
            if k > 1 and dec_meas:
                itl_segment(first + b, first + b * (k - 1), k - 1, dec_meas)
            tick += k
            last_dec_end = end
            if in_window:
                win_tokens += decodes * k
        now = end
        stop = False
        # prompts: first chunks, and prompts completed (their next token)
        for rid, done, chunk, total in work:
            used += _cdiv(done + chunk, BLOCK) - _cdiv(done, BLOCK)
            if done + chunk < total:
                pf, pf_done, pf_total = rid, done + chunk, total
                continue
            if rid == pf:
                pf = -1
            g = gen[rid] + 1
            gen[rid] = g
            if measured[rid]:
                if g == 1:
                    ttfts.append(now - arrived[rid] + overhead)
                else:  # preempted before: this token's gap spans the preemption
                    itl_v.append(now - last_emit[rid])
                    itl_w.append(1.0)
            last_emit[rid] = now
            if in_window:
                win_tokens += 1
            if g >= out_len:
                del running[rid]
                used -= _cdiv(total, BLOCK)
                meas_done += measured[rid]
                stop = complete(now) or stop
                continue
            kk = total - tick
            key[rid] = kk
            gbase[rid] = g - tick
            joined[rid] = now
            joins[rid] = now
            joins_no += 1
            join_no[rid] = joins_no
            heapq.heappush(heap, (tick + out_len - g - 1, joins_no, rid))
            decodes += 1
            dec_meas += measured[rid]
            sum_key += kk
            phase[kk % BLOCK] += 1
        # decoders that emitted their last token
        while heap and heap[0][0] < tick:
            _, no, rid = heapq.heappop(heap)
            if join_no[rid] != no:
                continue
            join_no[rid] = -1
            del running[rid]
            used -= _cdiv(key[rid] + tick, BLOCK)
            decodes -= 1
            dec_meas -= measured[rid]
            sum_key -= key[rid]
            phase[key[rid] % BLOCK] -= 1
            meas_done += measured[rid]
            stop = complete(now) or stop
        if stop:
            t_end = now
            break

    pull_arrivals(t_end)
    assert t_start is not None
    window = max(t_end - t_start, 1e-9)
    per_s = 1000.0 / window
    return SimResult(
        requests=meas_done, throughput_rps=win_done * per_s * dp, output_tokens_per_s=win_tokens * per_s * dp,
        ttft_ms=_percentiles(ttfts), itl_ms=_weighted_percentiles(itl_v, itl_w),
        mean_running=run_area / window * dp, mean_waiting=wait_area / window * dp,
        saturated=win_done < SATURATED_SHARE * win_arrived, preemptions=preemptions * dp,
    )
