"""Alternatives (other configurations worth knowing) and fixes (changes that make an infeasible plan fit)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from planner.memory import DTYPE_BYTES, MemoryResult
from planner.plan.context import PlanContext, Settings, baseline_scales, memory_for, useful_floor
from planner.plan.layouts import Layout, pp_is_valid, tp_is_valid
from planner.plan.settle import Candidate, busy_gpus, mode_metric
from planner.plan.speed import fp8_weights, perf_for
from planner.units import GiB


def objective(ctx: PlanContext, row: dict[str, Any]) -> tuple[float, ...]:
    """Sort key of a configuration under the mode's objective (smaller is better): fitting and allowed first, then
    the metric the layout choice uses (plan/settle.mode_metric: latency the lowest ITL, throughput the most output
    tokens/s, balanced the most per busy GPU)."""
    lay = Layout(tp=row["tensor_parallel_size"], pp=row["pipeline_parallel_size"], dp=row["data_parallel_size"])
    itl, tput = row.get("itl_ms"), row.get("output_tokens_per_s_total")
    per_gpu = tput / busy_gpus(lay, ctx.req.concurrency, ctx.arch.is_moe) if tput is not None else None
    metric = mode_metric(ctx.req.mode, itl, tput, per_gpu)
    return (not row["fits"], bool(row["forbidden"]), metric, itl or float("inf"), -(tput or 0.0))


def option_row(ctx: PlanContext, layout: Layout, kv: str, mem: MemoryResult, s: Settings, *, change: str,
                forbidden: list[str], quantization: str | None, max_model_len: int,
                linear_bytes: float | None = None, preferred_by: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    perf = perf_for(ctx, layout, mem, replace(s, layout=layout, kv_cache_dtype=kv), linear_bytes) if mem.weights_fit \
        else None
    prefs = preferred_by or []
    return {"tensor_parallel_size": layout.tp, "pipeline_parallel_size": layout.pp,
            "data_parallel_size": layout.dp, "enable_expert_parallel": layout.ep,
            "kv_cache_dtype": kv, "fits": mem.fits, "forbidden": forbidden,
            "preference": float(sum(float(p["score"]) for p in prefs)), "preferred_by": [p["rule"] for p in prefs],
            "kv_cache_tokens": mem.kv_cache_tokens, "max_concurrency": round(mem.max_concurrency, 4),
            "weights_bytes": mem.weights_bytes, "gpus": layout.gpus, "quantization": quantization,
            "max_model_len": max_model_len, "change": change,
            "itl_ms": round(perf.itl_ms, 3) if perf else None,
            "ttft_ms": round(perf.ttft_ms, 3) if perf else None,
            "output_tokens_per_s_total": round(perf.output_tokens_per_s_total, 1) if perf else None}


def alternatives(ctx: PlanContext, cands: list[Candidate], layout: Layout, kv: str, s: Settings, max_len: int
                  ) -> list[dict[str, Any]]:
    """The best few other configurations (layout, KV dtype, FP8 weights), judged at the plan's own max_model_len
    (the candidates were sized at the full length; a clamped plan re-sizes them, so "fits" means the same thing
    in the headline and in this table)."""
    rows, scales = [], baseline_scales(ctx)
    for c in cands:
        if c.layout == layout and c.kv_cache_dtype == kv:
            continue
        change = [c.layout.label] if c.layout != layout else []
        change += [f"KV {c.kv_cache_dtype}"] if c.kv_cache_dtype != kv else []
        mem = c.memory if max_len == ctx.target_len else memory_for(
            ctx, c.layout, c.kv_cache_dtype, replace(s, layout=c.layout, kv_cache_dtype=c.kv_cache_dtype), max_len,
            scales)
        rows.append(option_row(ctx, c.layout, c.kv_cache_dtype, mem, s, change=", ".join(change),
                                forbidden=[f"{f['rule']}: {f['reason']}" for f in c.forbidden],
                                quantization=ctx.quant, max_model_len=max_len, preferred_by=c.preferred_by))
    fp8 = fp8_weights(ctx)
    if fp8 is not None:
        mem = memory_for(ctx, layout, kv, replace(s, layout=layout), max_len, baseline_scales(ctx), fp8)
        rows.append(option_row(ctx, layout, kv, mem, s, change="FP8 weights (--quantization fp8)", forbidden=[],
                                quantization="fp8", max_model_len=max_len, linear_bytes=fp8))
    rows.sort(key=lambda r: objective(ctx, r))
    return rows[:int(ctx.run.params["alternatives_shown"])]


def fix_row(change: str, flags: str, mem: MemoryResult, detail: str) -> dict[str, Any]:
    return {"change": change, "flags": flags, "fits": mem.fits, "kv_cache_tokens": mem.kv_cache_tokens,
            "max_concurrency": round(mem.max_concurrency, 4), "weights_bytes": mem.weights_bytes,
            "kv_cache_bytes": mem.kv_cache_bytes, "detail": detail}


def _layout_flags(lay: Layout) -> str:
    """The layout as plan flags (a fix names the whole configuration it was sized with)."""
    flags = [f"--tp {lay.tp}"] if lay.tp > 1 else []
    flags += [f"--pp {lay.pp}"] if lay.pp > 1 else []
    flags += ["--enable-expert-parallel"] if lay.ep else []
    return " ".join(flags)


def _sized_fix(ctx: PlanContext, change: str, flags: str, lay: Layout, kv: str, s: Settings, max_len: int,
               detail: Callable[[MemoryResult], str], linear_bytes: float | None = None
               ) -> tuple[dict[str, Any] | None, bool]:
    """A fix sized at the full context, or (named as a combination, and flagged True) at the longest context that
    still serves the workload; None when neither fits."""
    scales = baseline_scales(ctx)
    s = replace(s, layout=lay, kv_cache_dtype=kv)
    m = memory_for(ctx, lay, kv, s, max_len, scales, linear_bytes)
    if m.fits:
        return fix_row(change, flags, m, detail(m)), False
    n = m.max_fitting_model_len if m.weights_fit else 0
    if n < useful_floor(ctx):
        return None, False
    m = memory_for(ctx, lay, kv, s, n, scales, linear_bytes)
    return fix_row(f"{change} + shorter context", f"{flags} --max-model-len {n}".strip(), m,
                   detail(m) + f"; context {n:,} of {max_len:,} tokens"), True


def fixes(ctx: PlanContext, layout: Layout, kv: str, s: Settings, mem: MemoryResult, max_len: int
          ) -> list[dict[str, Any]]:
    """Changes that make an infeasible plan fit, smallest change first, each re-sized with the same accounting:
    a shorter context that still serves the workload, FP8 KV, quantized weights on the same GPUs, more GPUs,
    freeing the busy GPUs. Each names every flag it was sized with; none is offered that cannot help here."""
    out: list[dict[str, Any] | None] = []
    here = _layout_flags(layout)
    floor = useful_floor(ctx)
    if mem.weights_fit and floor <= mem.max_fitting_model_len < max_len:
        n = mem.max_fitting_model_len
        m = memory_for(ctx, layout, kv, s, n, baseline_scales(ctx))
        out.append(fix_row("shorter context", f"{here} --max-model-len {n}".strip(), m,
                           f"{m.kv_cache_tokens:,} KV tokens hold one {n:,}-token sequence"))
    if kv == "auto" and mem.weights_fit and ctx.hw.spec and ctx.hw.spec.fp8_supported:
        out.append(_sized_fix(ctx, "FP8 KV cache", f"{here} --kv-cache-dtype fp8".strip(), layout, "fp8", s, max_len,
                              lambda m: f"KV capacity {mem.kv_cache_tokens:,} -> {m.kv_cache_tokens:,} tokens")[0])

    def weights(m: MemoryResult) -> str:
        return f"weights {mem.weights_bytes / GiB:.2f} -> {m.weights_bytes / GiB:.2f} GiB per GPU"

    fp8 = fp8_weights(ctx)
    if fp8 is not None:
        out.append(_sized_fix(ctx, "FP8 weights", f"{here} --quantization fp8".strip(), layout, kv, s, max_len,
                              lambda m: weights(m) + " (online FP8, or an FP8 checkpoint of this model)", fp8)[0])
    elif ctx.quant is None:
        w4 = float(ctx.run.params["wbytes_awq_int4"])
        out.append(_sized_fix(ctx, "4-bit checkpoint", f"an AWQ/GPTQ 4-bit checkpoint {here}".strip(), layout, kv,
                              s, max_len, weights, w4)[0])
    if not any(f is not None and f["fits"] for f in out) and ctx.run.params["offload_fix"]:
        out.append(offload_fix(ctx, layout, kv, s, mem, max_len))
    if not any(d.mig_profile for d in (ctx.hw.selection.devices if ctx.hw.selection else ())):
        out.extend(more_gpus(ctx, layout, kv, s, max_len))
    if ctx.hw.free_bytes is not None:
        free = replace(ctx, hw=replace(ctx.hw, free_bytes=None))
        util = float(ctx.run.params["default_gpu_memory_utilization"])
        out.append(_sized_fix(free, "free the busy GPUs", f"{here} --ignore-used".strip(), layout, kv,
                              replace(s, util=util), max_len,
                              lambda m: "stop the other processes: the plan on empty GPUs at vLLM's default budget")[0])
    return [f for f in out if f is not None]


def more_gpus(ctx: PlanContext, layout: Layout, kv: str, s: Settings, max_len: int) -> list[dict[str, Any]]:
    """The smallest layout with more GPUs per replica (TP within a node, then PP across nodes) that fits the full
    context, and a smaller one that fits a context still serving the workload, when there is one."""
    per_node = max(ctx.hw.gpus_per_node, int(ctx.run.params["whatif_gpus_per_node"]))
    tps = [t for t in range(1, per_node + 1) if per_node % t == 0]  # TP groups that tile a node
    grid = [Layout(tp=t, pp=p, dp=1) for t in tps for p in range(1, ctx.arch.num_layers + 1) if t * p <= 8 * per_node]

    def tier(lay: Layout) -> int:  # TP alone first, then PP across whole nodes, then PP inside a node
        return 0 if lay.pp == 1 else 1 if lay.gpus % per_node == 0 else 2 if lay.gpus < per_node else 3

    options = sorted((lay for lay in grid if tier(lay) < 3), key=lambda lay: (tier(lay), lay.gpus, lay.pp))
    out: list[dict[str, Any]] = []
    for lay in options:
        if lay.gpus <= layout.tp * layout.pp or tp_is_valid(ctx.arch, lay.tp) or pp_is_valid(ctx.arch, lay.pp):
            continue
        n = -(-lay.gpus // per_node)
        nodes = f" --nodes {n} --gpus-per-node {per_node}" if n > 1 else ""
        label = f"{lay.gpus} GPUs ({lay.label})"
        row, clamped = _sized_fix(ctx, "more GPUs", f"--gpus {lay.gpus}{nodes} {_layout_flags(lay)}", lay, kv, s,
                                  max_len, lambda m, label=label: f"{label}: {m.kv_cache_tokens:,} KV tokens")
        if row is None or (clamped and out):  # only the smallest layout that serves a shorter context
            continue
        out.append(row)
        if not clamped:
            break
    return out


def offload_fix(ctx: PlanContext, layout: Layout, kv: str, s: Settings, mem: MemoryResult, max_len: int
                ) -> dict[str, Any] | None:
    """--cpu-offload-gb, offered only when no other change on these GPUs fits (plan/options.fixes): the smallest
    whole GiB that fits the full context (or the shortest useful one), with the speed it costs stated, since every
    forward then streams the offloaded weights over the host link."""
    from planner.features.offload import eligible_bytes

    if mem.offloaded_bytes or ctx.hw.spec is None or ctx.hw.spec.host_link is None:
        return None
    act = DTYPE_BYTES[ctx.dtype]
    linear = act if ctx.quant is None else float(ctx.run.params["linear_bytes_per_param"])
    eligible = eligible_bytes(ctx.arch, tp=layout.tp, pp=layout.pp, stage=layout.pp - 1, act_bytes=act,
                              linear_bytes_per_param=linear, version=ctx.version)
    one_request = mem.bytes_per_block * -(-useful_floor(ctx) // s.block_size)
    short = mem.weights_bytes + mem.activation_peak_bytes + mem.non_torch_bytes + one_request - mem.budget_bytes
    if mem.cuda_graph_in_budget:
        short += mem.cuda_graph_bytes
    gib = max(1, math.ceil(max(0, short) / GiB) + 1)
    if gib * GiB > eligible:
        return None
    off = replace(ctx, features=replace(ctx.features, cpu_offload_gb=float(gib)))
    base = perf_for(ctx, layout, mem, s) if mem.weights_fit else None
    here = _layout_flags(layout)

    def detail(m: MemoryResult) -> str:
        perf = perf_for(off, layout, m, replace(s, layout=layout, kv_cache_dtype=kv))
        cost = f"ITL {perf.itl_ms:.1f} ms" if perf else "speed unknown"
        if perf and base:
            cost = f"ITL {base.itl_ms:.1f} -> {perf.itl_ms:.1f} ms"
        return (f"{m.offloaded_bytes / GiB:.2f} GiB of weights per GPU in CPU memory, streamed over the host link "
                f"every step: {cost} (the only change on these GPUs that fits)")

    return _sized_fix(off, "CPU weight offload", f"{here} --cpu-offload-gb {gib}".strip(), layout, kv, s, max_len,
                      detail)[0]
