"""`vllm-planner sweep`: every configuration vLLM could run here, with memory, speed and the sizing verdict."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from planner.errors import InputError
from planner.plan.context import (
    baseline_scales,
    cluster_fact,
    gpu_fact,
    initial_settings,
    memory_for,
    model_fact,
    plan_context,
    request_fact,
)
from planner.plan.layouts import launchable
from planner.plan.options import fp8_weights, objective
from planner.plan.settle import Candidate, candidate_fact, kv_options, launch_facts, pinned_layouts
from planner.plan.speed import perf_for
from planner.policy.loader import PackSet
from planner.schemas import PlanRequest

# Bounds on one sweep (issue 22 item 7): each length and utilization multiplies the grid, and every row goes
# through the memory and speed models and the rules engine.
MAX_SWEEP_LENGTHS = 64
MAX_SWEEP_UTILIZATIONS = 64
MAX_SWEEP_ROWS = 4096


def check_sweep_axes(max_model_lens: list[int] | None, utilizations: list[float] | None) -> None:
    """Refuse more lengths or utilizations than a sweep tries (before anything is loaded)."""
    if max_model_lens is not None and len(max_model_lens) > MAX_SWEEP_LENGTHS:
        raise InputError(f"--max-model-lens: {len(max_model_lens):,} lengths; a sweep tries at most "
                         f"{MAX_SWEEP_LENGTHS}")
    if utilizations is not None and len(utilizations) > MAX_SWEEP_UTILIZATIONS:
        raise InputError(f"utilizations: {len(utilizations):,} values; a sweep tries at most "
                         f"{MAX_SWEEP_UTILIZATIONS}")


def sweep(req: PlanRequest, *, max_model_lens: list[int] | None = None, utilizations: list[float] | None = None,
          packset: PackSet | None = None) -> list[dict[str, Any]]:
    """Every (layout x KV dtype x weights x max_model_len x utilization) vLLM could run here, with memory, speed
    at the request's workload and the sizing rules' verdict, best first under the mode's objective. The whole
    grid goes through the rules engine as one batch of candidate facts."""
    check_sweep_axes(max_model_lens, utilizations)
    ctx = plan_context(req, packset)
    s0 = initial_settings(ctx)
    lens = list(dict.fromkeys(max_model_lens or [ctx.target_len]))
    too_long = [n for n in lens if n > ctx.model_max_len]
    if too_long:
        raise InputError(f"--max-model-lens {too_long[0]} exceeds the model's maximum length {ctx.model_max_len}")
    utils = list(dict.fromkeys(utilizations or [s0.util]))
    lays = launchable(ctx, pinned_layouts(ctx))
    kv_opts = kv_options(req.pinned.kv_cache_dtype, bool(ctx.hw.spec and ctx.hw.spec.fp8_supported))
    weights: list[tuple[str | None, float | None]] = [(ctx.quant, None)]
    fp8 = None if req.pinned.quantization else fp8_weights(ctx)
    if fp8 is not None:
        weights.append(("fp8", fp8))
    size = len(lays) * len(kv_opts) * len(weights) * len(lens) * len(utils)
    if size > MAX_SWEEP_ROWS:
        raise InputError(f"the sweep would try {size:,} configurations ({len(lays)} layouts x {len(kv_opts)} KV "
                         f"dtypes x {len(weights)} weight formats x {len(lens)} lengths x {len(utils)} "
                         f"utilizations); at most {MAX_SWEEP_ROWS:,}: give fewer --max-model-lens or pin "
                         "--tp/--pp/--dp")
    scales = baseline_scales(ctx)
    grid = []
    for lay, kv, (quant, wbytes), length, util in itertools.product(lays, kv_opts, weights, lens, utils):
        s = replace(s0, util=util, layout=lay, kv_cache_dtype=kv)
        cand = Candidate(layout=lay, kv_cache_dtype=kv, forbidden=[],
                         launch=launch_facts(ctx, lay),
                         memory=memory_for(ctx, lay, kv, s, min(length, ctx.model_max_len), scales, wbytes))
        grid.append((cand, length, s, quant, wbytes))
    facts = []
    for i, (c, _, _, quant, _) in enumerate(grid):
        fact = candidate_fact(c, req, quant, {})
        facts.append({**fact, "id": f"candidate:{i}", "key": f"candidate:{i}"})
    base = [gpu_fact(ctx.hw, ctx.run.params), model_fact(ctx.arch, ctx.quant, ctx.dtype),
            request_fact(req, ctx.version, ctx.model_max_len), cluster_fact(ctx.hw)]
    sizing = ctx.run.run_stage("sizing", base + facts)
    rows = []
    for i, (c, length, s, quant, wbytes) in enumerate(grid):
        m = c.memory
        perf = perf_for(ctx, c.layout, m, s, wbytes) if m.weights_fit else None
        rows.append({
            "tensor_parallel_size": c.layout.tp, "pipeline_parallel_size": c.layout.pp,
            "data_parallel_size": c.layout.dp, "enable_expert_parallel": c.layout.ep,
            "gpus": c.layout.gpus, "quantization": quant,
            "kv_cache_dtype": c.kv_cache_dtype, "max_model_len": length,
            "gpu_memory_utilization": s.util, "fits": m.fits, "kv_cache_tokens": m.kv_cache_tokens,
            "max_concurrency": round(m.max_concurrency, 3), "weights_bytes": m.weights_bytes,
            "kv_cache_bytes": m.kv_cache_bytes,
            "forbidden": [f"{f['rule']}: {f['reason']}" for f in sizing.forbidden.get(f"candidate:{i}", [])],
            "effective_concurrency": perf.effective_concurrency if perf else None,
            "itl_ms": round(perf.itl_ms, 3) if perf else None,
            "ttft_ms": round(perf.ttft_ms, 3) if perf else None,
            "decode_tokens_per_s_per_request": round(perf.decode_tokens_per_s_per_request, 2) if perf else None,
            "output_tokens_per_s_total": round(perf.output_tokens_per_s_total, 1) if perf else None,
        })
    rows.sort(key=lambda r: objective(ctx, r))
    return rows
