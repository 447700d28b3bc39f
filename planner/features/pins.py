"""The serving features one plan runs with, from the pinned flags (vLLM's spelling) and the version's defaults.

The only I/O here is loading a speculative draft's config (a local directory or a bundled catalog id: plans are
made offline). Contradictory or ineffective combinations are input errors, since vLLM would silently ignore them
(e.g. `--max-loras` without `--enable-lora`) and the plan would then describe a server nobody launched.
"""

from __future__ import annotations

from typing import Any

from planner.errors import InputError
from planner.features import LoraSpec, ServingFeatures, SpecDecode
from planner.models.arch import ModelArch
from planner.schemas import PlanRequest

_LORA_FLAGS = ("max_loras", "max_lora_rank", "max_cpu_loras", "lora_dtype")
SERVING_FEATURE_PINS = ("enable_lora", *_LORA_FLAGS, "speculative_config", "cpu_offload_gb", "enable_prefix_caching",
                        "limit_mm_per_prompt")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def lora_of(req: PlanRequest) -> LoraSpec | None:
    pin = req.pinned
    if not pin.enable_lora:
        stray = [f for f in _LORA_FLAGS if getattr(pin, f) is not None]
        if stray:
            raise InputError(f"{_flag(stray[0])} {getattr(pin, stray[0])}: has no effect without --enable-lora "
                             "(vLLM ignores LoRA sizes unless LoRA is enabled)")
        return None
    return LoraSpec(max_loras=pin.max_loras or 1, max_lora_rank=pin.max_lora_rank or 16,
                    max_cpu_loras=pin.max_cpu_loras, lora_dtype=pin.lora_dtype or "auto")


def load_draft(ref: str) -> ModelArch:
    """A draft / EAGLE head config, offline: a local directory (or its config.json) or a bundled catalog id."""
    from pathlib import Path

    from planner.errors import ModelConfigError
    from planner.models.sources import catalog_entry, load_model

    path = Path(ref).expanduser()
    if not (path.is_dir() or path.is_file() or catalog_entry(ref) is not None):
        raise InputError(f"--speculative-config: model {ref!r} is neither a local directory nor a bundled catalog id "
                         "(the planner reads the draft's config.json offline; download it and give its directory)")
    try:
        return load_model(ref)
    except ModelConfigError as e:
        raise InputError(f"--speculative-config: model {ref!r}: {e}") from None


def speculative_of(req: PlanRequest, target: ModelArch, version: str) -> SpecDecode | None:
    config = req.pinned.speculative_config
    if config is None:
        if req.spec_acceptance_rate is not None:
            raise InputError(f"--spec-acceptance-rate {req.spec_acceptance_rate}: needs --speculative-config")
        return None
    from planner.features.speculative import parse_speculative

    return parse_speculative(config, target=target, version=version, tp=req.pinned.tensor_parallel_size or 1,
                             pp=req.pinned.pipeline_parallel_size or 1, load_draft=load_draft)


def features_of(req: PlanRequest, arch: ModelArch, version: str, params: dict[str, Any]) -> ServingFeatures:
    """Everything beyond the bare model that the plan sizes: the pins, checked, with vLLM's defaults filled in."""
    pin = req.pinned
    prefix = pin.enable_prefix_caching
    if prefix is None:
        prefix = bool(params["prefix_caching_default"]) and arch.attention_kind != "ssm"
    if req.prefix_hit_rate > 0 and not prefix:
        why = "--no-enable-prefix-caching" if pin.enable_prefix_caching is False else \
            f"prefix caching is off by default here (vLLM {version}, {arch.attention_kind} attention)"
        raise InputError(f"--prefix-hit-rate {req.prefix_hit_rate:g}: nothing is cached ({why}); pin "
                         "--enable-prefix-caching or drop the hit rate")
    limits = None
    if pin.limit_mm_per_prompt is not None:
        from planner.features.multimodal import load_mm_encoders, mm_limits_problems

        problems = mm_limits_problems(arch, pin.limit_mm_per_prompt, version, load_mm_encoders())
        if problems:
            raise InputError(problems[0])
        limits = {str(k): _mm_count(k, v) for k, v in pin.limit_mm_per_prompt.items()}
    lora = lora_of(req)
    if lora is not None:
        from planner.features.lora import lora_problems

        problems = lora_problems(arch, lora, version, tp=pin.tensor_parallel_size or 1)
        if problems:
            raise InputError(problems[0])
    return ServingFeatures(lora=lora, speculative=speculative_of(req, arch, version),
                           cpu_offload_gb=float(pin.cpu_offload_gb or 0.0), prefix_caching=prefix,
                           prefix_hit_rate=req.prefix_hit_rate if prefix else 0.0, mm_limits=limits)


def offload_notes(arch: ModelArch, features: ServingFeatures, *, version: str, quantization: str | None,
                  kv_groups: int, offloaded: int, eligible: int) -> list[str]:
    """vLLM's refusals of this --cpu-offload-gb launch (raised) and its surprises (returned as plan notes)."""
    from planner.features.offload import offload_problems

    if not features.cpu_offload_gb:
        return []
    problems = offload_problems(arch, cpu_offload_gb=features.cpu_offload_gb, version=version, offloaded=offloaded,
                                eligible=eligible, quantization=quantization, kv_cache_groups=kv_groups)
    errors = [m.removeprefix("error: ") for m in problems if m.startswith("error: ")]
    if errors:
        raise InputError(f"--cpu-offload-gb {features.cpu_offload_gb:g}: {errors[0]}")
    return [m.removeprefix("warning: ") for m in problems]


def _mm_count(key: Any, value: Any) -> int:
    """A modality's item limit: an int, or (vLLM 0.11+) an object whose `count` is one."""
    count = value.get("count") if isinstance(value, dict) else value
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InputError(f"--limit-mm-per-prompt: {key!r} must be a count of items >= 0 (got {value!r})")
    return count
