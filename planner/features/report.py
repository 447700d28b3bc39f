"""The plan's account of its serving features: what each costs in memory and speed, the assumptions behind it,
and the warnings an operator needs (speculation that slows the server down, offload streamed every step)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from planner.units import GiB

if TYPE_CHECKING:
    from planner.memory import MemoryResult
    from planner.perf import PerfInputs, PerfResult
    from planner.plan.context import PlanContext


def _warn(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "rule": None}


def features_report(ctx: PlanContext, mem: MemoryResult, inp: PerfInputs | None, perf: PerfResult | None, *,
                    max_num_batched_tokens: int, max_model_len: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(`features` JSON of the plan, warnings). Byte figures are per GPU of the binding stage."""
    from planner.features.pins import offload_notes
    from planner.perf import spec_break_even, spec_gain

    f, out, warnings = ctx.features, {}, []
    batch = perf.batch_per_replica if perf else 1
    req = ctx.req
    if f.lora is not None:
        out["lora"] = {"max_loras": f.lora.max_loras, "max_lora_rank": f.lora.max_lora_rank,
                       "lora_dtype": f.lora.lora_dtype, "adapters_per_step": min(batch, f.lora.max_loras),
                       "step_overhead_ms": round(inp.lora_overhead_ms, 3) if inp else None,
                       "adapter_bytes_read_per_step": inp.lora_bytes if inp else None}
    if f.speculative is not None:
        s = f.speculative
        ctx_len = req.input_len + req.output_len // 2
        spec: dict[str, Any] = {"method": s.method, "num_speculative_tokens": s.num_speculative_tokens,
                                "draft": s.draft.name if s.draft is not None else None}
        if inp is not None and inp.bandwidth_bytes_per_s and inp.peak_flops:
            gain = spec_gain(inp, batch, ctx_len, ctx.run.params)
            even = spec_break_even(inp, ctx_len, ctx.run.params)
            spec.update(tokens_per_step=round(inp.spec_tokens_per_step, 3), speedup=round(gain, 3),
                        break_even_batch=even)
            if gain <= 1.0:
                warnings.append(_warn("W-SPEC-SLOWER", (
                    f"speculative decoding ({s.method}, k={s.num_speculative_tokens}) makes decoding slower at "
                    f"{batch} running sequences per replica ({gain:.2f}x): verifying {1 + s.num_speculative_tokens} "
                    f"tokens per sequence costs more than the ~{inp.spec_tokens_per_step:.2f} accepted ones save"
                    + (f"; it pays below {even} sequences" if even and even > 1 else "")
                    + ". Drop --speculative-config for this load")))
        out["speculative"] = spec
    if f.cpu_offload_gb:
        hl = ctx.hw.spec.host_link if ctx.hw.spec else None
        link = None if hl is None else f"{hl.type} gen{hl.pcie_gen}" if hl.pcie_gen else hl.type
        out["cpu_offload"] = {"cpu_offload_gb": f.cpu_offload_gb, "offloaded_bytes": mem.offloaded_bytes,
                              "host_link": link, "ms_per_forward": round(inp.offload_ms, 3) if inp else None}
        if inp is not None and inp.offload_ms:
            warnings.append(_warn("W-OFFLOAD", (
                f"--cpu-offload-gb {f.cpu_offload_gb:g}: {mem.offloaded_bytes / GiB:.2f} GiB of weights per GPU cross "
                f"the host link every forward, {inp.offload_ms:.1f} ms per step and per prefill chunk")))
        from planner.features.offload import eligible_bytes
        from planner.memory import DTYPE_BYTES

        act = DTYPE_BYTES[ctx.dtype]
        linear = act if ctx.quant is None else float(ctx.run.params["linear_bytes_per_param"])
        cfg_tp, cfg_pp = inp.tp if inp else 1, inp.pp if inp else 1
        eligible = eligible_bytes(ctx.arch, tp=cfg_tp, pp=cfg_pp, stage=cfg_pp - 1, act_bytes=act,
                                  linear_bytes_per_param=linear, version=ctx.version)
        for note in offload_notes(ctx.arch, f, version=ctx.version, quantization=ctx.quant, kv_groups=mem.kv_groups,
                                  offloaded=mem.offloaded_bytes, eligible=eligible):
            warnings.append(_warn("W-OFFLOAD", note))
    if f.prefix_caching:
        held = batch * (req.input_len + req.output_len)
        out["prefix_caching"] = {"enabled": True, "hit_rate": f.prefix_hit_rate,
                                 "cached_prefix_tokens": max(0, mem.kv_cache_tokens - held)}
    else:
        out["prefix_caching"] = {"enabled": False, "hit_rate": 0.0, "cached_prefix_tokens": 0}
    mm = _mm_json(ctx, max_num_batched_tokens, max_model_len)
    if mm:
        out["multimodal"] = mm
    return out, warnings


def _mm_json(ctx: PlanContext, max_num_batched_tokens: int, max_model_len: int) -> dict[str, Any] | None:
    """The multimodal limits vLLM runs with and its encoder cache (in encoder-output embeddings, not KV)."""
    from planner.features.multimodal import effective_limits, encoder_cache_tokens, family_of, load_mm_encoders

    if not ctx.arch.is_multimodal:
        return None
    data, limits = load_mm_encoders(), ctx.features.mm_limits
    cache = encoder_cache_tokens(ctx.arch, limits, max_num_batched_tokens=max_num_batched_tokens,
                                 max_model_len=max_model_len, version=ctx.version, data=data)
    return {"family": family_of(ctx.arch), "limits": effective_limits(ctx.arch, limits, ctx.version, data) or None,
            "encoder_cache_tokens": cache if family_of(ctx.arch) else None}
