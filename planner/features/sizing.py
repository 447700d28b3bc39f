"""What the serving features add to one layout's memory and speed: the bridge from planner/features' pure
accounting to the memory model's FeatureMemory and the performance model's inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.memory import NO_FEATURES, FeatureMemory

if TYPE_CHECKING:
    from planner.plan.context import PlanContext
    from planner.plan.layouts import Layout


def feature_memory(ctx: PlanContext, layout: Layout, *, max_model_len: int, max_num_batched_tokens: int,
                   max_num_seqs: int, act_bytes: int, linear_bytes: float) -> FeatureMemory:
    """Per-GPU memory effects of the plan's serving features on `layout` (NO_FEATURES when none applies)."""
    from planner.features.multimodal import load_mm_encoders, mm_profile

    f, p = ctx.features, ctx.run.params
    mm = None
    if ctx.arch.is_multimodal:
        t = max_num_batched_tokens if p["chunked_prefill"] else max(max_num_batched_tokens, max_model_len)
        mm = mm_profile(ctx.arch, f.mm_limits, max_num_batched_tokens=t, max_model_len=max_model_len,
                        max_num_seqs=max_num_seqs, act_bytes=act_bytes, tp=layout.tp, version=ctx.version, params=p,
                        data=load_mm_encoders(), chunked_prefill=bool(p["chunked_prefill"]))
    if mm is None:
        return NO_FEATURES
    return FeatureMemory(mm=mm)
