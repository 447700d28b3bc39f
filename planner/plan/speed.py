"""Speed of a configuration: the performance model's inputs, and the plan's {low, expected, high} ranges."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from planner.features.sizing import FeatureSpeed
from planner.memory import DTYPE_BYTES, MemoryResult
from planner.models.params import active_params, routed_expert_params
from planner.perf import PerfInputs, PerfResult, estimate, ranges
from planner.plan.context import PlanContext, Settings, baseline_scales, initial_settings, memory_for
from planner.plan.layouts import Layout
from planner.schemas import PlanRequest, PlanResponse


def peak_flops(ctx: PlanContext, fp8_weights: bool = False) -> float | None:
    """Dense peak FLOP/s of the dtype the matmuls run in (the pack's compute_dtype; fp8 for a what-if FP8 row)."""
    spec = ctx.hw.spec
    if spec is None:
        return None
    key = "fp8" if fp8_weights else str(ctx.run.params["compute_dtype"])
    if key == "bf16" and ctx.dtype == "float16":
        key = "fp16"
    tflops = spec.peak_tflops.get(key) or spec.peak_tflops.get("bf16") or spec.peak_tflops.get("fp16")
    return tflops * 1e12 if tflops else None


def fp8_weights(ctx: PlanContext) -> float | None:
    """Bytes per linear weight of an FP8 version of this model, when that is a change worth listing: an
    unquantized model on a GPU every supported vLLM runs FP8 weights on (Marlin weight-only FP8 below 8.9)."""
    if ctx.quant is not None or ctx.hw.compute_capability < float(ctx.run.params["fp8_weights_min_capability"]):
        return None
    return float(ctx.run.params["wbytes_fp8"])


def perf_inputs(ctx: PlanContext, layout: Layout, mem: MemoryResult, settings: Settings,
                 linear_bytes: float | None = None) -> PerfInputs:
    spec, arch, p = ctx.hw.spec, ctx.arch, ctx.run.params
    peak = peak_flops(ctx, fp8_weights=linear_bytes is not None and linear_bytes == fp8_weights(ctx))
    per_param = linear_bytes or (DTYPE_BYTES[ctx.dtype] if ctx.quant is None else float(p["linear_bytes_per_param"]))
    # Experts are spread over the TP x DP ranks of one engine (whole experts with EP, slices without): the same
    # bytes per GPU either way (memory.rank_weights).
    experts = int(routed_expert_params(arch) * per_param / (layout.tp * layout.pp * layout.dp)) if arch.moe else 0
    link = (spec.interconnect.bandwidth_bytes_per_s
            if spec is not None and ctx.hw.interconnect == spec.interconnect.type else None)
    extra = _feature_speed(ctx, layout, per_param)
    return PerfInputs(
        weights_bytes_per_gpu=mem.streamed_weights_bytes,
        kv_bytes_per_token_per_gpu=mem.kv_bytes_per_token,
        active_params=active_params(arch), num_layers=arch.num_layers, num_attention_heads=arch.num_attention_heads,
        head_dim=arch.head_dim, tp=layout.tp, pp=layout.pp, dp=layout.dp,
        bandwidth_bytes_per_s=spec.hbm_bandwidth_bytes_per_s * ctx.hw.fraction if spec else None,
        peak_flops=peak * ctx.hw.fraction if peak else None,
        interconnect=ctx.hw.interconnect, concurrency=ctx.req.concurrency, input_len=ctx.req.input_len,
        output_len=ctx.req.output_len, max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens, kv_cache_tokens=mem.kv_cache_tokens,
        hidden_size=arch.hidden_size, act_bytes=DTYPE_BYTES[ctx.dtype],
        expert_bytes_per_gpu=min(experts, mem.streamed_weights_bytes),
        num_experts=arch.moe.num_experts if arch.moe else 0,
        experts_per_token=arch.moe.experts_per_token if arch.moe else 0,
        active_expert_params=(routed_expert_params(arch) * arch.moe.experts_per_token // arch.moe.num_experts
                              if arch.moe else 0),
        num_moe_layers=(len(arch.moe.moe_layers) or arch.num_layers) if arch.moe else 0,
        link_bandwidth_bytes_per_s=link, nodes=ctx.hw.nodes, moe_lockstep=arch.is_moe and layout.dp > 1,
        prefix_hit_rate=ctx.features.prefix_hit_rate, **asdict(extra),
    )


def _feature_speed(ctx: PlanContext, layout: Layout, per_param: float) -> FeatureSpeed:
    """The serving features' per-step costs on the layout's last stage (which holds the drafter)."""
    from planner.features.offload import offloaded_bytes
    from planner.features.sizing import active, feature_speed
    from planner.features.speculative import draft_weights_bytes

    f = ctx.features
    if not active(f):
        return FeatureSpeed()
    act = DTYPE_BYTES[ctx.dtype]
    dp, ep = (layout.dp, layout.ep) if ctx.arch.is_moe else (1, False)
    off = offloaded_bytes(ctx.arch, cpu_offload_gb=f.cpu_offload_gb, tp=layout.tp, pp=layout.pp, stage=layout.pp - 1,
                          act_bytes=act, linear_bytes_per_param=per_param, version=ctx.version, dp=dp,
                          ep=ep) if f.cpu_offload_gb else 0
    draft = draft_weights_bytes(f.speculative, ctx.arch, tp=layout.tp, act_bytes=act, linear_bytes_per_param=per_param,
                                pp=layout.pp, dp=dp, ep=ep) if f.speculative else 0
    return feature_speed(ctx, layout, offloaded=off, batch_hint=ctx.req.concurrency, act_bytes=act,
                         linear_bytes=per_param, draft_weights=draft)


def perf_for(ctx: PlanContext, layout: Layout, mem: MemoryResult, settings: Settings,
          linear_bytes: float | None = None) -> PerfResult | None:
    return estimate(perf_inputs(ctx, layout, mem, settings, linear_bytes), ctx.run.params)


def plan_perf_inputs(resp: PlanResponse, ctx: PlanContext) -> PerfInputs:
    """The performance model's inputs for the configuration a plan chose (benchmarks/perf_accuracy.py
    re-evaluates them with other params while fitting)."""
    cfg, m = resp.config, resp.memory
    layout = Layout(tp=cfg.tensor_parallel_size, pp=cfg.pipeline_parallel_size, dp=cfg.data_parallel_size,
                    ep=cfg.enable_expert_parallel)
    hw = replace(ctx.hw, interconnect=resp.hardware.interconnect)
    settings = replace(initial_settings(ctx), max_num_seqs=cfg.max_num_seqs,
                       max_num_batched_tokens=cfg.max_num_batched_tokens, layout=layout)
    mem = memory_for(ctx, layout, cfg.kv_cache_dtype, settings, cfg.max_model_len, baseline_scales(ctx))
    return perf_inputs(replace(ctx, hw=hw), layout, replace(mem, kv_cache_tokens=m.kv_cache_tokens), settings)


def perf_json(req: PlanRequest, perf: PerfResult | None, params: dict[str, Any]) -> dict[str, Any]:
    """Speeds as {low, expected, high}; each band is the calibrated measured/predicted ratio range of its metric."""
    p = {k: float(params[f"perf_range_{k}"]) for k in ("itl_low", "itl_high", "ttft_low", "ttft_high", "tput_low",
                                                      "tput_high")}
    out: dict[str, Any] = {"workload": {"concurrency": req.concurrency, "input_len": req.input_len,
                                        "output_len": req.output_len}}
    if perf is None:
        zero = {"low": 0.0, "expected": 0.0, "high": 0.0}
        out.update({k: zero for k in ("itl_ms", "ttft_ms", "decode_tokens_per_s_per_request",
                                      "output_tokens_per_s_total", "prefill_tokens_per_s")})
        out.update({"effective_concurrency": 0, "assumptions": []})
        return out
    out["itl_ms"] = ranges(perf.itl_ms, p["itl_low"], p["itl_high"])
    out["decode_tokens_per_s_per_request"] = ranges(perf.decode_tokens_per_s_per_request, 1 / p["itl_high"],
                                                    1 / p["itl_low"])
    out["ttft_ms"] = ranges(perf.ttft_ms, p["ttft_low"], p["ttft_high"])
    out["prefill_tokens_per_s"] = ranges(perf.prefill_tokens_per_s, 1 / p["ttft_high"], 1 / p["ttft_low"])
    out["output_tokens_per_s_total"] = ranges(perf.output_tokens_per_s_total, p["tput_low"], p["tput_high"])
    out["effective_concurrency"] = perf.effective_concurrency
    out["assumptions"] = [*perf.assumptions,
                          "ranges span the 5th-95th percentile of measured/predicted on the calibration set, in and "
                          "out of sample (benchmarks/perf_accuracy.py), not a fixed margin"]
    return out
