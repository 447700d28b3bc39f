"""Alternatives (other configurations worth knowing) and fixes (changes that make an infeasible plan fit)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from planner.memory import MemoryResult
from planner.plan.context import PlanContext, Settings, baseline_scales, memory_for
from planner.plan.layouts import Layout, pp_is_valid, tp_is_valid
from planner.plan.settle import Candidate
from planner.plan.speed import fp8_weights, perf_for
from planner.units import GiB


def objective(mode: str, row: dict[str, Any]) -> tuple[float, ...]:
    """Sort key of a configuration under the mode's objective (smaller is better): fitting and allowed first,
    then latency: lowest ITL; throughput: most output tokens/s; balanced: most output tokens/s per GPU."""
    itl = row.get("itl_ms") or float("inf")
    tput = row.get("output_tokens_per_s_total") or 0.0
    head = (not row["fits"], bool(row["forbidden"]))
    if mode == "latency":
        return (*head, itl, -tput)
    if mode == "throughput":
        return (*head, -tput, itl)
    return (*head, -tput / max(1, row["gpus"]), itl)


def option_row(ctx: PlanContext, layout: Layout, kv: str, mem: MemoryResult, s: Settings, *, change: str,
                forbidden: list[str], quantization: str | None, max_model_len: int,
                linear_bytes: float | None = None, preferred_by: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    perf = perf_for(ctx, layout, mem, replace(s, layout=layout, kv_cache_dtype=kv), linear_bytes) if mem.weights_fit \
        else None
    prefs = preferred_by or []
    return {"tensor_parallel_size": layout.tp, "pipeline_parallel_size": layout.pp,
            "data_parallel_size": layout.dp, "kv_cache_dtype": kv, "fits": mem.fits, "forbidden": forbidden,
            "preference": float(sum(float(p["score"]) for p in prefs)), "preferred_by": [p["rule"] for p in prefs],
            "kv_cache_tokens": mem.kv_cache_tokens, "max_concurrency": round(mem.max_concurrency, 4),
            "weights_bytes": mem.weights_bytes, "gpus": layout.gpus, "quantization": quantization,
            "max_model_len": max_model_len, "change": change,
            "itl_ms": round(perf.itl_ms, 3) if perf else None,
            "ttft_ms": round(perf.ttft_ms, 3) if perf else None,
            "output_tokens_per_s_total": round(perf.output_tokens_per_s_total, 1) if perf else None}


def alternatives(ctx: PlanContext, cands: list[Candidate], layout: Layout, kv: str, s: Settings, max_len: int
                  ) -> list[dict[str, Any]]:
    """The best few other configurations (layout, KV dtype, FP8 weights), from the candidates already sized."""
    rows = []
    for c in cands:
        if c.layout == layout and c.kv_cache_dtype == kv:
            continue
        change = [f"TP{c.layout.tp} PP{c.layout.pp} DP{c.layout.dp}"] if c.layout != layout else []
        change += [f"KV {c.kv_cache_dtype}"] if c.kv_cache_dtype != kv else []
        rows.append(option_row(ctx, c.layout, c.kv_cache_dtype, c.memory, s, change=", ".join(change),
                                forbidden=[f"{f['rule']}: {f['reason']}" for f in c.forbidden],
                                quantization=ctx.quant, max_model_len=max_len, preferred_by=c.preferred_by))
    fp8 = fp8_weights(ctx)
    if fp8 is not None:
        mem = memory_for(ctx, layout, kv, replace(s, layout=layout), max_len, baseline_scales(ctx), fp8)
        rows.append(option_row(ctx, layout, kv, mem, s, change="FP8 weights (--quantization fp8)", forbidden=[],
                                quantization="fp8", max_model_len=max_len, linear_bytes=fp8))
    rows.sort(key=lambda r: objective(ctx.req.mode, r))
    return rows[:int(ctx.run.params["alternatives_shown"])]


def fix_row(change: str, flags: str, mem: MemoryResult, detail: str) -> dict[str, Any]:
    return {"change": change, "flags": flags, "fits": mem.fits, "kv_cache_tokens": mem.kv_cache_tokens,
            "max_concurrency": round(mem.max_concurrency, 4), "weights_bytes": mem.weights_bytes,
            "kv_cache_bytes": mem.kv_cache_bytes, "detail": detail}


def fixes(ctx: PlanContext, layout: Layout, kv: str, s: Settings, mem: MemoryResult, max_len: int
           ) -> list[dict[str, Any]]:
    """Single changes that make an infeasible plan fit, each re-sized with the same accounting."""
    scales, out = baseline_scales(ctx), []
    need = ctx.req.input_len + ctx.req.output_len
    if mem.weights_fit and 0 < mem.max_fitting_model_len < max_len:
        n = mem.max_fitting_model_len
        m = memory_for(ctx, layout, kv, s, n, scales)
        note = "" if n >= need else f" (shorter than the {need} tokens a request needs)"
        out.append(fix_row("fewer context tokens", f"--max-model-len {n}", m,
                        f"{m.kv_cache_tokens:,} KV tokens hold {n:,}-token sequences{note}"))
    if kv == "auto" and ctx.hw.spec and ctx.hw.spec.fp8_supported:
        m = memory_for(ctx, layout, "fp8", replace(s, kv_cache_dtype="fp8"), max_len, scales)
        out.append(fix_row("FP8 KV cache", "--kv-cache-dtype fp8", m,
                        f"KV capacity {mem.kv_cache_tokens:,} -> {m.kv_cache_tokens:,} tokens"))
    fp8 = fp8_weights(ctx)
    if fp8 is not None:
        m = memory_for(ctx, layout, kv, s, max_len, scales, fp8)
        out.append(fix_row("quantized checkpoint (FP8)", "--quantization fp8 (or an FP8 checkpoint)", m,
                        f"weights {mem.weights_bytes / GiB:.2f} -> {m.weights_bytes / GiB:.2f} GiB per GPU"))
    elif ctx.quant is None:
        w4 = float(ctx.run.params["wbytes_awq_int4"])
        m = memory_for(ctx, layout, kv, s, max_len, scales, w4)
        out.append(fix_row("quantized checkpoint (4-bit)", "an AWQ/GPTQ 4-bit checkpoint of this model", m,
                        f"weights {mem.weights_bytes / GiB:.2f} -> {m.weights_bytes / GiB:.2f} GiB per GPU"))
    out.extend(more_gpus(ctx, layout, kv, s, max_len, scales))
    if kv != "auto" and not ctx.req.pinned.kv_cache_dtype:  # sized with this KV dtype: the fix must carry it
        for f in out:
            if not f["flags"].startswith("--kv-cache-dtype"):
                f["flags"] += f" --kv-cache-dtype {kv}"
    return [f for f in out if f["fits"]]


def more_gpus(ctx: PlanContext, layout: Layout, kv: str, s: Settings, max_len: int, scales: dict[str, float]
               ) -> list[dict[str, Any]]:
    """The smallest layout with more GPUs per replica (TP within a node, then PP across nodes) that fits."""
    per_node = max(ctx.hw.gpus_per_node, int(ctx.run.params["whatif_gpus_per_node"]))
    tps = [t for t in range(1, per_node + 1) if per_node % t == 0]  # TP groups that tile a node
    grid = [Layout(tp=t, pp=p, dp=1) for t in tps for p in range(1, ctx.arch.num_layers + 1) if t * p <= 8 * per_node]

    def tier(lay: Layout) -> int:  # TP alone first, then PP across whole nodes, then PP inside a node
        return 0 if lay.pp == 1 else 1 if lay.gpus % per_node == 0 else 2 if lay.gpus < per_node else 3

    options = sorted((lay for lay in grid if tier(lay) < 3), key=lambda lay: (tier(lay), lay.gpus, lay.pp))
    for lay in options:
        if lay.gpus <= layout.tp * layout.pp or tp_is_valid(ctx.arch, lay.tp) or pp_is_valid(ctx.arch, lay.pp):
            continue
        m = memory_for(ctx, lay, kv, replace(s, layout=lay), max_len, scales)
        if m.fits:
            n = -(-lay.gpus // per_node)
            nodes = f" --nodes {n} --gpus-per-node {per_node}" if n > 1 else ""
            return [fix_row("more GPUs", f"--gpus {lay.gpus}{nodes} --tp {lay.tp}" + (f" --pp {lay.pp}" if lay.pp > 1
                                                                                    else ""), m,
                         f"{lay.gpus} GPUs (TP{lay.tp} PP{lay.pp}): {m.kv_cache_tokens:,} KV tokens")]
    return []
