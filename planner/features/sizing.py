"""What the serving features add to one layout's memory and speed: the bridge from planner/features' pure
accounting to the memory model's FeatureMemory and the performance model's inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.features import ServingFeatures
from planner.memory import NO_FEATURES, FeatureMemory

if TYPE_CHECKING:
    from planner.plan.context import PlanContext
    from planner.plan.layouts import Layout


def _stages(ctx: PlanContext, layout: Layout, act_bytes: int, linear_bytes: float
            ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per PP stage: bytes the features add (LoRA slots; the drafter on the last stage) and bytes offloaded."""
    from planner.features.lora import lora_weights_bytes
    from planner.features.offload import offloaded_bytes
    from planner.features.speculative import draft_weights_bytes

    f, arch = ctx.features, ctx.arch
    dp = layout.dp if arch.is_moe else 1
    ep = layout.ep and arch.is_moe
    added, off = [], []
    for stage in range(layout.pp):
        extra = 0
        if f.lora is not None:
            extra += lora_weights_bytes(arch, f.lora, tp=layout.tp, pp=layout.pp, stage=stage, act_bytes=act_bytes,
                                        version=ctx.version, dp=dp, ep=ep)
        if f.speculative is not None and stage == layout.pp - 1:
            extra += draft_weights_bytes(f.speculative, arch, tp=layout.tp, act_bytes=act_bytes,
                                         linear_bytes_per_param=linear_bytes, pp=layout.pp, dp=dp, ep=ep)
        added.append(extra)
        off.append(offloaded_bytes(arch, cpu_offload_gb=f.cpu_offload_gb, tp=layout.tp, pp=layout.pp, stage=stage,
                                   act_bytes=act_bytes, linear_bytes_per_param=linear_bytes, version=ctx.version,
                                   dp=dp, ep=ep) if f.cpu_offload_gb else 0)
    return tuple(added), tuple(off)


def feature_memory(ctx: PlanContext, layout: Layout, *, max_model_len: int, max_num_batched_tokens: int,
                   max_num_seqs: int, act_bytes: int, linear_bytes: float, kv_bytes: int) -> FeatureMemory:
    """Per-GPU memory effects of the plan's serving features on `layout` (NO_FEATURES when none applies)."""
    from planner.features.lora import lora_activation_bytes
    from planner.features.multimodal import load_mm_encoders, mm_profile, tower_skipped
    from planner.features.speculative import draft_kv

    f, p = ctx.features, ctx.run.params
    t = max_num_batched_tokens if p["chunked_prefill"] else max(max_num_batched_tokens, max_model_len)
    mm = None
    if ctx.arch.is_multimodal:
        mm = mm_profile(ctx.arch, f.mm_limits, max_num_batched_tokens=t, max_model_len=max_model_len,
                        max_num_seqs=max_num_seqs, act_bytes=act_bytes, tp=layout.tp, version=ctx.version, params=p,
                        data=load_mm_encoders(), chunked_prefill=bool(p["chunked_prefill"]))
    tower = not (ctx.arch.is_multimodal and f.mm_limits is not None
                 and tower_skipped(ctx.arch, f.mm_limits, ctx.version, load_mm_encoders()))
    # Without prefix caching a Mamba group holds one state block per request, not align mode's 2
    # (shared/spec/vllm-accounting.md 2: MambaSpec blocks)
    state_blocks = 1 if ctx.req.pinned.enable_prefix_caching is False and ctx.arch.attention_kind in (
        "hybrid", "ssm") else None
    if mm is None and tower and state_blocks is None and f.lora is None and f.speculative is None \
            and not f.cpu_offload_gb:
        return NO_FEATURES
    added, off = _stages(ctx, layout, act_bytes, linear_bytes)
    activation = lora_activation_bytes(ctx.arch, f.lora, tokens=t, version=ctx.version) if f.lora else 0
    dkv = draft_kv(f.speculative, ctx.arch, tp=layout.tp, kv_bytes=kv_bytes) if f.speculative else None
    return FeatureMemory(added_weights=added, offloaded=off, activation=activation, mm=mm, vision_tower=tower,
                         state_blocks=state_blocks,
                         draft_kv_layers=dkv.layers if dkv else 0,
                         draft_kv_bytes_per_token=dkv.bytes_per_token_per_layer if dkv else 0)


@dataclass(frozen=True)
class FeatureSpeed:
    """The performance model's feature inputs for one layout (planner/perf.py PerfInputs)."""

    offload_ms: float = 0.0
    lora_bytes: int = 0
    lora_flops_per_token: float = 0.0
    lora_overhead_ms: float = 0.0
    spec_k: int = 0
    spec_tokens_per_step: float = 1.0
    draft_bytes: int = 0
    draft_flops_per_token: float = 0.0
    spec_passes: int = 0
    spec_acceptance: float = 0.0


def feature_speed(ctx: PlanContext, layout: Layout, *, offloaded: int, batch_hint: int, act_bytes: int,
                  linear_bytes: float, draft_weights: int) -> FeatureSpeed:
    """Per-step costs the features add on the binding GPU: the offloaded weights over the host link, the LoRA
    kernels of the adapters a batch uses, and the speculative drafter with its expected tokens per step."""
    from planner.features.lora import lora_step_cost
    from planner.features.offload import host_link_key, offload_step_ms
    from planner.features.speculative import acceptance_rate, draft_cost, expected_tokens_per_step

    f, p, spec = ctx.features, ctx.run.params, ctx.hw.spec
    out: dict[str, float | int] = {}
    if offloaded and spec is not None and spec.host_link is not None:
        link = spec.host_link
        out["offload_ms"] = offload_step_ms(offloaded, link.bandwidth_bytes_per_s, p,
                                            link=host_link_key(link.type, link.pcie_gen))
    if f.lora is not None:
        cost = lora_step_cost(ctx.arch, f.lora, active=min(batch_hint, f.lora.max_loras), tp=layout.tp, pp=layout.pp,
                              stage=layout.pp - 1, act_bytes=act_bytes, version=ctx.version, params=p,
                              dp=layout.dp if ctx.arch.is_moe else 1, ep=layout.ep and ctx.arch.is_moe)
        out.update(lora_bytes=cost.bytes_read, lora_flops_per_token=cost.flops_per_token,
                   lora_overhead_ms=cost.overhead_s * 1000)
    if f.speculative is not None:
        s = f.speculative
        a = ctx.req.spec_acceptance_rate or acceptance_rate(s, p)
        cost = draft_cost(s, ctx.arch, tp=layout.tp, act_bytes=act_bytes, linear_bytes_per_param=linear_bytes,
                          draft_weights=draft_weights)
        out.update(spec_k=s.num_speculative_tokens, spec_acceptance=a,
                   spec_tokens_per_step=expected_tokens_per_step(a, s.num_speculative_tokens),
                   draft_bytes=cost.bytes_read, draft_flops_per_token=cost.flops_per_token, spec_passes=cost.passes)
    return FeatureSpeed(**out)  # type: ignore[arg-type]


def active(f: ServingFeatures) -> bool:
    return f.lora is not None or f.speculative is not None or bool(f.cpu_offload_gb)
