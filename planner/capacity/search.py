"""Candidate replicas per GPU type, from the plan's own machinery, and how many of each a load needs.

For each GPU type the plan's context and settle loop run once on one node (more nodes only when one cannot hold
the model): that yields every layout x KV dtype vLLM could launch, its memory, the sizing rules' verdict and
the settings the recommend stage chose. Each allowed candidate becomes a replica shape (a dense model's data
parallelism is the replica count, so its shapes are TP x PP; a MoE engine keeps its in-engine DP and EP), and
planner/capacity/load.py sizes it in replicas for the load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from planner.capacity.load import AtRate, Replica, Saturation, at_rate, saturation
from planner.errors import InputError
from planner.hardware.catalog import GpuSpec
from planner.memory import MemoryResult
from planner.models.arch import ModelArch
from planner.plan.context import (
    PlanContext,
    Settings,
    baseline_scales,
    cluster_fact,
    gpu_fact,
    memory_for,
    model_fact,
    plan_context,
    request_fact,
)
from planner.plan.layouts import Layout
from planner.plan.settle import context_len, settle
from planner.plan.speed import fp8_weights, perf_inputs
from planner.policy.loader import PackSet
from planner.schemas import PlanRequest


@dataclass(frozen=True)
class Load:
    """The offered load and the SLOs (latencies at `percentile`, None when not constrained)."""

    rate: float
    input_len: int
    output_len: int
    slo_ttft_ms: float | None
    slo_itl_ms: float | None
    percentile: int


@dataclass
class Shape:
    """One replica: a GPU type, a layout and KV dtype, its settings, memory and load model."""

    ctx: PlanContext
    layout: Layout
    kv_cache_dtype: str
    settings: Settings
    memory: MemoryResult
    max_model_len: int
    replica: Replica
    sat: Saturation

    @property
    def key(self) -> str:
        gpu = self.ctx.hw.spec.id if self.ctx.hw.spec else "unknown"
        quant = f"/{self.ctx.quant}" if self.ctx.quant and self.ctx.req.pinned.quantization else ""
        return f"{gpu}/{self.layout.key}/kv{self.kv_cache_dtype}{quant}"

    @property
    def nodes(self) -> int:
        return max(1, math.ceil(self.layout.gpus / self.ctx.hw.gpus_per_node))


@dataclass(frozen=True)
class Sized:
    """A shape sized for the load: replicas, and latencies at the SLO percentile (low, expected, high)."""

    replicas: int
    expected: AtRate
    ttft_ms: tuple[float, float, float]
    itl_ms: tuple[float, float, float]
    meets_slo: str  # yes | at-risk | no
    method: str = "closed form"  # or "closed form + simulation" (finalists, planner/capacity/simulate.py)


def _concurrency_hint(load: Load, cap: int) -> int:
    """Requests in flight the whole load implies at an ITL near the SLO (Little's law); it steers only the
    recommend rules that look at concurrency (KV pressure), since every layout is sized here anyway."""
    itl = load.slo_itl_ms or 30.0
    return max(1, min(cap, math.ceil(load.rate * (load.output_len * itl) / 1000)))


def shapes_for_gpu(template: PlanRequest, gpu: GpuSpec, packset: PackSet, arch: ModelArch, load: Load,
                   max_gpus: int) -> tuple[list[Shape], list[str]]:
    """Every replica shape the packs allow on this GPU type (one node, or the fewest nodes that hold the model
    within `max_gpus`), and notes on what was left out. With the pack's capacity_search_fp8_weights, an
    unquantized model is also tried with online FP8 weights (`--quantization fp8`) where the GPU runs them."""
    shapes, notes, ctx = _shapes_with(template, gpu, packset, arch, load, max_gpus)
    if (ctx is not None and bool(ctx.run.params["capacity_search_fp8_weights"]) and fp8_weights(ctx) is not None
            and template.pinned.quantization is None):
        fp8 = template.model_copy(update={"pinned": template.pinned.model_copy(update={"quantization": "fp8"})})
        more, why, _ = _shapes_with(fp8, gpu, packset, arch, load, max_gpus)
        shapes += more
        notes += [f"FP8 weights: {w}" for w in why if not shapes]
    return shapes, notes


def _shapes_with(template: PlanRequest, gpu: GpuSpec, packset: PackSet, arch: ModelArch, load: Load,
                 max_gpus: int) -> tuple[list[Shape], list[str], PlanContext | None]:
    node = min(int(packset.param_values()["capacity_gpus_per_node"]), max_gpus)
    notes: list[str] = []
    nodes = 1
    while True:
        req = template.model_copy(update={
            "gpu": gpu.id, "gpus": node * nodes, "nodes": nodes, "gpus_per_node": node,
            "concurrency": _concurrency_hint(load, 4096), "input_len": load.input_len,
            "output_len": load.output_len})
        ctx = plan_context(req, packset, arch=arch)
        base = [gpu_fact(ctx.hw, ctx.run.params), model_fact(ctx.arch, ctx.quant, ctx.dtype),
                request_fact(req, ctx.version, ctx.model_max_len), cluster_fact(ctx.hw)]
        _, cands, settings = settle(ctx, base)
        allowed = [c for c in cands if not c.forbidden]
        if any(c.memory.weights_fit for c in allowed) or node * (nodes * 2) > max_gpus:
            break
        nodes *= 2
    if not any(c.memory.weights_fit for c in allowed):
        gates = sorted({f["reason"] for c in cands for f in c.forbidden if f["rule"].startswith("gate.")})
        notes.append(gates[0] if gates else f"the weights do not fit {node * nodes} GPUs")
        return [], notes, ctx
    if ctx.hw.spec is None or not ctx.hw.spec.hbm_bandwidth_bytes_per_s:
        return [], ["no bandwidth or FLOPs in the catalog: no speed to size replicas with"], ctx
    scales = baseline_scales(ctx)
    need = load.input_len + load.output_len
    out: dict[str, Shape] = {}
    for c in allowed:
        if not c.memory.weights_fit:
            continue
        length = context_len(c, ctx.target_len)
        if length < need:
            notes.append(f"{c.layout.label} kv {c.kv_cache_dtype}: its KV cache holds {length:,} tokens, less than "
                         f"one request of {need:,}")
            continue
        lay = c.layout if arch.is_moe else Layout(tp=c.layout.tp, pp=c.layout.pp, dp=1)
        s = replace(settings, layout=lay, kv_cache_dtype=c.kv_cache_dtype)
        mem = memory_for(ctx, lay, c.kv_cache_dtype, s, length, scales)
        inp = perf_inputs(ctx, lay, mem, s)
        rep = Replica(inp, dict(ctx.run.params))
        if not inp.bandwidth_bytes_per_s or not inp.peak_flops:
            continue
        shape = Shape(ctx=ctx, layout=lay, kv_cache_dtype=c.kv_cache_dtype, settings=s, memory=mem,
                      max_model_len=length, replica=rep, sat=saturation(rep))
        out.setdefault(shape.key, shape)
    return list(out.values()), notes, ctx


def _status(value: tuple[float, float, float], slo: float | None) -> str:
    if slo is None or value[2] <= slo:
        return "yes"
    return "at-risk" if value[1] <= slo else "no"


SLO_ORDER = {"yes": 0, "at-risk": 1, "no": 2}  # better first


def evaluate(shape: Shape, load: Load, replicas: int, *, with_low: bool = True) -> Sized:
    """Latencies of `replicas` copies of the shape sharing the load evenly, with the calibrated bands: the
    optimistic and pessimistic ends rerun the queueing with every step time scaled by the ITL band, and scale
    the unqueued TTFT by the TTFT band. The status needs only the expected and pessimistic ends (`with_low`
    False skips the optimistic one while searching)."""
    p = shape.replica.params
    pct = load.percentile / 100
    rate = load.rate / replicas
    exp = at_rate(shape.replica, shape.sat, rate, pct)
    high = at_rate(shape.replica, shape.sat, rate, pct, slow=float(p["perf_range_itl_high"]))
    low = at_rate(shape.replica, shape.sat, rate, pct, slow=float(p["perf_range_itl_low"])) if with_low else exp
    ttft = (exp.ttft_base_ms * float(p["perf_range_ttft_low"]) + low.ttft_wait_ms, exp.ttft_ms,
            exp.ttft_base_ms * float(p["perf_range_ttft_high"]) + high.ttft_wait_ms)
    itl = (min(low.itl_ms, exp.itl_ms), exp.itl_ms, max(high.itl_ms, exp.itl_ms))
    ttft = (min(ttft[0], ttft[1]), ttft[1], max(ttft[1], ttft[2]))
    meets = _meets(ttft, itl, load)
    if high.overloaded or exp.overloaded:
        meets = "no" if exp.overloaded else max(meets, "at-risk", key=SLO_ORDER.__getitem__)
    return Sized(replicas=replicas, expected=exp, ttft_ms=ttft, itl_ms=itl, meets_slo=meets)


def size(shape: Shape, load: Load) -> Sized:
    """The fewest replicas that carry the load within the SLOs with confidence ("yes"), else the fewest that meet
    them at the expected speed ("at-risk"), else the fewest that carry the rate at the pack's utilization cap
    ("no": the SLO is below what this shape can do at any load). More replicas only lower each one's rate, so
    the status never gets worse as replicas are added: a doubling search then a bisection finds the fewest."""
    p = shape.replica.params
    pessimistic = shape.sat.max_rate / float(p["perf_range_itl_high"])
    floor = max(1, math.ceil(load.rate / (pessimistic * float(p["capacity_max_utilization"]))))
    first = evaluate(shape, load, floor, with_low=False)
    found = first
    if first.meets_slo != "yes":
        limit = max(floor, int(p["capacity_max_replicas"]))
        want = evaluate(shape, load, limit, with_low=False).meets_slo  # the best any replica count reaches
        lo = hi = floor  # double until `want` is reached, then bisect: evaluate(lo) is worse, evaluate(hi) reaches
        while SLO_ORDER[found.meets_slo] > SLO_ORDER[want]:
            lo, hi = hi, min(limit, hi * 2)
            found = evaluate(shape, load, hi, with_low=False)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            trial = evaluate(shape, load, mid, with_low=False)
            if SLO_ORDER[trial.meets_slo] <= SLO_ORDER[want]:
                hi, found = mid, trial
            else:
                lo = mid
    return evaluate(shape, load, found.replicas)


def _meets(ttft: tuple[float, float, float], itl: tuple[float, float, float], load: Load) -> str:
    return max((_status(ttft, load.slo_ttft_ms), _status(itl, load.slo_itl_ms)), key=SLO_ORDER.__getitem__)


def simulated(shape: Shape, load: Load, replicas: int) -> Sized:
    """The closed form's answer for `replicas`, checked by replaying vLLM's scheduler (planner/capacity/simulate)
    at the expected and the pessimistic step times: each latency is the higher of the two models, and a run
    whose queue grows is overloaded."""
    from planner.capacity.simulate import simulate

    base = evaluate(shape, load, replicas)
    p = shape.replica.params
    rate = load.rate / replicas
    n = int(p["capacity_simulated_requests"])
    try:
        runs = [simulate(shape.replica.inp, p, rate, requests=n, warmup=max(50, n // 10), slow=slow)
                for slow in (1.0, float(p["perf_range_itl_high"]))]
    except ValueError:  # a configuration vLLM would not start; the closed form's answer stands
        return base
    exp, high = runs
    ttft = (base.ttft_ms[0], max(base.ttft_ms[1], exp.ttft_ms[load.percentile]),
            max(base.ttft_ms[2], high.ttft_ms[load.percentile], exp.ttft_ms[load.percentile]))
    itl = (base.itl_ms[0], max(base.itl_ms[1], exp.itl_ms[load.percentile]),
           max(base.itl_ms[2], high.itl_ms[load.percentile], exp.itl_ms[load.percentile]))
    meets = _meets(ttft, itl, load)
    if exp.saturated:
        meets = "no"
    elif high.saturated:
        meets = max(meets, "at-risk", key=SLO_ORDER.__getitem__)
    return replace(base, ttft_ms=ttft, itl_ms=itl, meets_slo=meets, method="closed form + simulation")


def verify(shape: Shape, load: Load, sized: Sized) -> Sized:
    """A finalist re-sized with the simulation: add replicas (a few at most) until its status is the closed
    form's again."""
    trial = simulated(shape, load, sized.replicas)
    for extra in range(1, int(shape.replica.params["capacity_simulated_extra_replicas"]) + 1):
        if SLO_ORDER[trial.meets_slo] <= SLO_ORDER[sized.meets_slo]:
            break
        trial = simulated(shape, load, sized.replicas + extra)
    return trial


def option_config(shape: Shape) -> dict[str, Any]:
    """The replica's `vllm serve` settings, keyed as plan's config."""
    s, lay = shape.settings, shape.layout
    return {"tensor_parallel_size": lay.tp, "pipeline_parallel_size": lay.pp, "data_parallel_size": lay.dp,
            "enable_expert_parallel": lay.ep, "quantization": shape.ctx.quant, "kv_cache_dtype": shape.kv_cache_dtype,
            "gpu_memory_utilization": s.util, "max_model_len": shape.max_model_len, "max_num_seqs": s.max_num_seqs,
            "max_num_batched_tokens": s.max_num_batched_tokens, "enforce_eager": s.enforce_eager,
            "block_size": s.block_size, "dtype": shape.ctx.dtype}


def check_load(load: Load) -> None:
    """Bad loads are input errors, named by their flag."""
    if not load.rate > 0 or math.isinf(load.rate):
        raise InputError(f"--rate {load.rate:g}: must be a positive number of requests per second")
    for flag, v in (("--slo-ttft-ms", load.slo_ttft_ms), ("--slo-itl-ms", load.slo_itl_ms)):
        if v is not None and (not v > 0 or math.isinf(v)):
            raise InputError(f"{flag} {v:g}: must be a positive number of milliseconds")
    if load.percentile not in (50, 90, 95, 99):
        raise InputError(f"--slo-percentile {load.percentile}: expected 50, 90, 95 or 99")
