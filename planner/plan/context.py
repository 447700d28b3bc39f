"""Inputs of a plan: target version, dtype, quantization, the packs' baseline stage, and the facts rules match on."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from planner.errors import InputError
from planner.features import NONE as NO_FEATURES
from planner.features import ServingFeatures
from planner.machine import Hardware, resolve_hardware
from planner.memory import DTYPE_BYTES, MemoryInputs, MemoryResult, account, kv_dtype_bytes
from planner.models.arch import ModelArch
from planner.models.params import active_params, total_params
from planner.models.sources import model_notes
from planner.plan.layouts import Layout
from planner.policy import PolicyRun
from planner.policy.facts import normalise_fact
from planner.policy.loader import PackSet, load_packset
from planner.schemas import PlanRequest
from planner.units import GiB

KNOWN_VLLM_VERSIONS = ("0.6.4", "0.8.5", "0.11.0", "0.15.0", "0.19.0", "0.20.0", "0.25.0", "0.29.0", "0.33.0")


DEFAULT_VLLM_VERSION = KNOWN_VLLM_VERSIONS[-1]


DTYPE_ALIASES = {"auto": "auto", "half": "float16", "float16": "float16", "fp16": "float16", "bfloat16": "bfloat16",
                 "bf16": "bfloat16", "float": "float32", "float32": "float32", "fp32": "float32"}


ONLINE_QUANTIZATIONS = ("fp8",)


def resolve_version(requested: str | None) -> tuple[str, list[str]]:
    """The accounting version to use, and a warning when the request is not a known version."""
    if requested is None:
        return DEFAULT_VLLM_VERSION, []
    try:
        v = Version(requested.lstrip("v"))
    except InvalidVersion:
        raise InputError(f"--vllm-version: {requested!r} is not a version like 0.11.0") from None
    known = [Version(k) for k in KNOWN_VLLM_VERSIONS]
    if v < known[0]:
        raise InputError(f"--vllm-version {requested}: older than {known[0]}, the oldest version the planner knows")
    if v.release[:3] in [k.release[:3] for k in known]:
        return requested.lstrip("v"), []
    nearest = min(known, key=lambda k: (abs((k.major * 1000 + k.minor) - (v.major * 1000 + v.minor)), -k.minor))
    return str(v), [f"vLLM {v} is not a version the planner has studied; using the accounting of {nearest}"]


def run_dtype(arch: ModelArch, pinned: str | None, cc: float) -> str:
    """The dtype vLLM runs the model in (vllm/config/model.py _resolve_auto_dtype)."""
    if pinned and pinned != "auto":
        if pinned not in DTYPE_ALIASES:
            raise InputError(f"--dtype: unknown dtype {pinned!r} (expected auto, half, float16, bfloat16, float32)")
        return DTYPE_ALIASES[pinned]
    supported = ["bfloat16", "float16", "float32"] if cc >= 8.0 else ["float16", "float32"]
    if arch.model_type in ("gemma2", "gemma3", "gemma3_text", "glm4"):
        supported = [d for d in supported if d != "float16"]
    config = arch.config_dtype if arch.config_dtype in DTYPE_BYTES else "float32"
    if config == "float32":
        return supported[0]
    return config if config in supported else supported[0]


def quantization_of(arch: ModelArch, pinned: str | None) -> str | None:
    if pinned:
        if arch.quant is not None and pinned != arch.quant.method:
            raise InputError(f"--quantization {pinned}: the checkpoint is already quantized as {arch.quant.method!r}")
        if arch.quant is None and pinned not in ONLINE_QUANTIZATIONS:
            raise InputError(f"--quantization {pinned}: needs a checkpoint quantized that way; online quantization "
                             f"of an unquantized checkpoint supports only {', '.join(ONLINE_QUANTIZATIONS)}")
        return pinned
    return arch.quant.method if arch.quant is not None else None


def free_memory_fields(hw: Hardware, params: dict[str, Any] | None) -> dict[str, Any]:
    """What vLLM will find free at startup (after its own CUDA context), and the utilization that fits it."""
    if hw.free_bytes is None or params is None:
        return {}
    usable = hw.free_bytes - params["context_baseline_gib"] * GiB
    max_util = math.floor(max(0.0, usable) / hw.memory_bytes * 100) / 100
    return {"free_gib": round(hw.free_bytes / GiB, 4), "max_util_for_free": max_util,
            "free_below_default_budget": max_util < float(params["default_gpu_memory_utilization"])}


def gpu_fact(hw: Hardware, params: dict[str, Any] | None = None) -> dict[str, Any]:
    s = hw.spec
    return normalise_fact("gpu", "0", {**free_memory_fields(hw, params),
        "name": hw.name, "catalog_id": s.id if s else "unknown", "vendor": hw.vendor or "unknown",
        "family": s.family if s else "unknown", "memory_bytes": hw.memory_bytes,
        "memory_gib": round(hw.memory_bytes / GiB, 4), "count": hw.count, "compute_capability": hw.compute_capability,
        "fp8_supported": s.fp8_supported if s else False, "fp4_supported": s.fp4_supported if s else False,
        "gfx_arch": s.gfx_arch if s else None,
        "interconnect": hw.interconnect, "hbm_bandwidth_gbps": s.hbm_bandwidth_bytes_per_s / 1e9 if s else None,
        "form_factor": s.form_factor if s else None,
    })


def model_fact(arch: ModelArch, quant: str | None, dtype: str) -> dict[str, Any]:
    bits = arch.quant.weight_bits if arch.quant is not None and quant == arch.quant.method else (8 if quant else None)
    return normalise_fact("model", "0", {
        "name": arch.name, "model_type": arch.model_type, "architecture": (arch.architectures or ("?",))[0],
        "params": total_params(arch),
        "active_params": active_params(arch), "is_moe": arch.is_moe, "attention": arch.attention_kind,
        "max_position_embeddings": arch.max_position_embeddings, "quantization": quant or "none",
        "weight_bits": bits, "dtype": dtype, "num_layers": arch.num_layers,
        "num_attention_heads": arch.num_attention_heads, "num_kv_heads": arch.num_kv_heads,
        "hidden_size": arch.hidden_size, "vocab_size": arch.vocab_size,
    })


def cluster_fact(hw: Hardware) -> dict[str, Any]:
    return normalise_fact("cluster", "0", {"gpus": hw.count, "nodes": hw.nodes, "gpus_per_node": hw.gpus_per_node,
                                           "interconnect": hw.interconnect})


def request_fact(req: PlanRequest, version: str, model_max_len: int) -> dict[str, Any]:
    v = Version(version)
    return normalise_fact("request", "0", {
        "mode": req.mode, "max_model_len": req.pinned.max_model_len or model_max_len, "model_max_len": model_max_len,
        "concurrency": req.concurrency, "input_len": req.input_len, "output_len": req.output_len,
        "vllm_version": version, "vllm_minor": v.minor if v.major == 0 else 1000, **feature_fields(req),
    })


def feature_fields(req: PlanRequest) -> dict[str, Any]:
    """The serving-feature pins as request-fact fields (only those given: facts never hold null)."""
    pin, out = req.pinned, {}
    for key in ("enable_lora", "max_loras", "max_lora_rank", "cpu_offload_gb", "enable_prefix_caching"):
        if getattr(pin, key) is not None:
            out[key] = getattr(pin, key)
    spec = pin.speculative_config or {}
    if isinstance(spec.get("method"), str):
        out["speculative_method"] = spec["method"]
    elif spec:
        out["speculative_method"] = "draft"  # a draft given by model only: vLLM infers the method from it
    k = spec.get("num_speculative_tokens")
    if isinstance(k, int) and not isinstance(k, bool):
        out["num_speculative_tokens"] = k
    if req.prefix_hit_rate:
        out["prefix_hit_rate"] = req.prefix_hit_rate
    return out


@dataclass(frozen=True)
class Settings:
    """Decided (or provisional) values of everything memory depends on."""

    util: float
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    enforce_eager: bool
    kv_cache_dtype: str
    layout: Layout | None


@dataclass
class PlanContext:
    """Everything computed on the way to a PlanResponse (kept for generate/sweep)."""

    req: PlanRequest
    arch: ModelArch
    hw: Hardware
    version: str
    packset: PackSet
    run: PolicyRun
    dtype: str
    quant: str | None
    target_len: int
    model_max_len: int
    features: ServingFeatures = NO_FEATURES  # LoRA, speculation, offload, prefix caching, multimodal limits


def memory_for(ctx: PlanContext, layout: Layout, kv: str, s: Settings, max_model_len: int, scales: dict[str, float],
            linear_bytes: float | None = None) -> MemoryResult:
    from planner.features.sizing import feature_memory

    act = DTYPE_BYTES[ctx.dtype]
    linear = linear_bytes or (act if ctx.quant is None else float(ctx.run.params["linear_bytes_per_param"]))
    features = feature_memory(ctx, layout, max_model_len=max_model_len, max_num_batched_tokens=s.max_num_batched_tokens,
                              max_num_seqs=s.max_num_seqs, act_bytes=act, linear_bytes=linear,
                              kv_bytes=kv_dtype_bytes(kv, ctx.dtype))
    return account(ctx.arch, MemoryInputs(
        total_bytes=ctx.hw.memory_bytes, tp=layout.tp, pp=layout.pp, dtype=ctx.dtype, linear_bytes_per_param=linear,
        kv_cache_dtype=kv, gpu_memory_utilization=s.util, max_model_len=max_model_len, max_num_seqs=s.max_num_seqs,
        max_num_batched_tokens=s.max_num_batched_tokens, block_size=s.block_size, enforce_eager=s.enforce_eager,
        scales=scales, free_bytes=ctx.hw.free_bytes, dp=layout.dp if ctx.arch.is_moe else 1,
        ep=layout.ep and ctx.arch.is_moe, sampler_sort=sampler_sort(ctx), features=features,
    ), ctx.run.params)


def useful_floor(ctx: PlanContext) -> int:
    """The shortest context worth serving: the pack's min_useful_context_tokens, or one request when longer, never
    more than the full length. Layouts and fixes that hold less are not chosen while another holds more."""
    req = ctx.req
    return min(ctx.target_len, max(int(ctx.run.params["min_useful_context_tokens"]), req.input_len + req.output_len))


def sampler_sort(ctx: PlanContext) -> bool:
    """Whether vLLM's sampler warm-up sorts the whole vocabulary: the pinned --sampler, else the version's default."""
    if ctx.req.pinned.sampler:
        return ctx.req.pinned.sampler == "sort"
    return bool(ctx.run.params["sampler_sort"])


def baseline_scales(ctx: PlanContext) -> dict[str, float]:
    out: dict[str, float] = {}
    for qty, items in ctx.run.stages["baseline"].scales.items():
        factor = 1.0
        for it in items:
            factor *= float(it["factor"])
        out[qty] = factor
    return out


def initial_settings(ctx: PlanContext) -> Settings:
    p, pin = ctx.run.params, ctx.req.pinned
    return Settings(
        util=pin.gpu_memory_utilization or float(p["default_gpu_memory_utilization"]),
        max_num_seqs=pin.max_num_seqs or int(p["default_max_num_seqs"]),
        max_num_batched_tokens=pin.max_num_batched_tokens or int(p["default_max_num_batched_tokens"]),
        block_size=int(p["default_block_size"]), enforce_eager=bool(pin.enforce_eager),
        kv_cache_dtype=pin.kv_cache_dtype or "auto", layout=None,
    )


def plan_context(req: PlanRequest, packset: PackSet | None = None, *, arch: ModelArch | None = None,
                 hw: Hardware | None = None) -> PlanContext:
    """Load everything a plan needs and run the baseline stage (arch/hw may be supplied preloaded)."""
    from planner.models.arch import derived_max_model_len
    from planner.models.sources import load_model

    t0 = time.perf_counter()
    packset = packset or load_packset(tuple(req.rules))
    load_ms = (time.perf_counter() - t0) * 1000
    version, vwarn = resolve_version(req.vllm_version)
    arch = arch or load_model(req.model)
    hw = hw or resolve_hardware(req)
    dtype = run_dtype(arch, req.pinned.dtype, hw.compute_capability)
    quant = quantization_of(arch, req.pinned.quantization)
    if req.pinned.enable_expert_parallel and not arch.is_moe:
        raise InputError(f"--enable-expert-parallel: {arch.name} is not a mixture-of-experts model")
    minor = Version(version).minor
    model_max_len = derived_max_model_len(arch, rope_rule="0.33" if minor >= 33 else "0.29")
    if req.pinned.max_model_len and req.pinned.max_model_len > model_max_len:
        raise InputError(f"--max-model-len {req.pinned.max_model_len} exceeds the model's maximum length "
                         f"{model_max_len} (vLLM refuses unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1)")
    run = PolicyRun(packset)
    run.timing_ms["load"] = load_ms
    ctx = PlanContext(req=req, arch=arch, hw=hw, version=version, packset=packset, run=run, dtype=dtype,
                      quant=quant, target_len=req.pinned.max_model_len or model_max_len, model_max_len=model_max_len)
    run.notices.extend(vwarn)
    run.notices.extend(hw.warnings)
    run.notices.extend(model_notes(arch))  # an alias: planned with its target's bundled config
    run.run_stage("baseline", [gpu_fact(hw), model_fact(arch, quant, dtype), request_fact(req, version, model_max_len),
                               cluster_fact(hw)])
    if quant is not None and run.param_set_by.get("linear_bytes_per_param") == "default":
        if req.pinned.quantization:
            where = f"--quantization {quant}"
        else:  # the checkpoint's own method: the model's config, not a rule pack, is what the planner cannot read
            from planner.models.arch import config_where

            where = f"{config_where(arch.name, arch.source)}: quantization_config.quant_method {quant!r}"
        raise InputError(f"{where}: a quantization method the planner does not know (no rule pack sets its bytes "
                         "per parameter; a site pack can, with a baseline rule that sets linear_bytes_per_param)")
    from planner.features.pins import features_of

    ctx.features = features_of(req, arch, version, run.params)
    return ctx
