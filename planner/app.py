"""Use cases: plan, detect. The only place that wires I/O (model sources, probe, packs) to the pure core.

plan():
  1. load packs, model and hardware;
  2. facts gpu/model/cluster/request -> baseline stage (params, scales);
  3. settle: enumerate candidates with the current settings -> sizing (forbid) -> recommend ->
     decisions; repeat until the decided settings stop changing (they depend on candidates only
     through the layout and KV dtype, so this converges in two or three passes);
  4. account memory and speed for the decided configuration; assemble the PlanResponse.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from planner import __version__
from planner.artifacts.launch import Launch, plan_launch
from planner.errors import InputError
from planner.hardware.select import nvlink_group
from planner.machine import Hardware, detect, probed_hardware, resolve_hardware  # noqa: F401 - re-exported
from planner.memory import DTYPE_BYTES, KV_DTYPES, MemoryInputs, MemoryResult, account
from planner.models.arch import ModelArch
from planner.models.params import active_params, routed_expert_params, total_params
from planner.perf import PerfInputs, PerfResult, estimate, ranges
from planner.policy import PolicyRun
from planner.policy.facts import normalise_fact
from planner.policy.loader import PackSet, load_packset
from planner.policy.resolver import Decision, resolve
from planner.schemas import PlanRequest, PlanResponse
from planner.search import Layout, layouts, pp_is_valid, tp_is_valid
from planner.units import GiB

# vLLM versions whose accounting the planner knows (shared/spec/vllm-accounting.md section 0).
KNOWN_VLLM_VERSIONS = ("0.6.4", "0.8.5", "0.11.0", "0.15.0", "0.19.0", "0.20.0", "0.25.0", "0.29.0", "0.33.0")
DEFAULT_VLLM_VERSION = KNOWN_VLLM_VERSIONS[-1]
MAX_SETTLE_PASSES = 4
DTYPE_ALIASES = {"auto": "auto", "half": "float16", "float16": "float16", "fp16": "float16", "bfloat16": "bfloat16",
                 "bf16": "bfloat16", "float": "float32", "float32": "float32", "fp32": "float32"}
ONLINE_QUANTIZATIONS = ("fp8",)


# ------------------------------------------------------------------------------------------- inputs


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


# ------------------------------------------------------------------------------------------- facts


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
        "name": hw.name, "catalog_id": s.id if s else "unknown", "vendor": s.vendor if s else "unknown",
        "family": s.family if s else "unknown", "memory_bytes": hw.memory_bytes,
        "memory_gib": round(hw.memory_bytes / GiB, 4), "count": hw.count, "compute_capability": hw.compute_capability,
        "fp8_supported": s.fp8_supported if s else False, "fp4_supported": s.fp4_supported if s else False,
        "interconnect": hw.interconnect, "hbm_bandwidth_gbps": s.hbm_bandwidth_bytes_per_s / 1e9 if s else None,
        "form_factor": s.form_factor if s else None,
    })


def model_fact(arch: ModelArch, quant: str | None, dtype: str) -> dict[str, Any]:
    bits = arch.quant.weight_bits if arch.quant is not None and quant == arch.quant.method else (8 if quant else None)
    return normalise_fact("model", "0", {
        "name": arch.name, "model_type": arch.model_type, "params": total_params(arch),
        "active_params": active_params(arch), "is_moe": arch.is_moe, "attention": arch.attention_kind,
        "max_position_embeddings": arch.max_position_embeddings, "quantization": quant or "none",
        "weight_bits": bits, "dtype": dtype, "num_layers": arch.num_layers,
        "num_attention_heads": arch.num_attention_heads, "num_kv_heads": arch.num_kv_heads,
        "hidden_size": arch.hidden_size, "vocab_size": arch.vocab_size,
    })


def request_fact(req: PlanRequest, version: str, model_max_len: int) -> dict[str, Any]:
    v = Version(version)
    return normalise_fact("request", "0", {
        "mode": req.mode, "max_model_len": req.pinned.max_model_len or model_max_len, "model_max_len": model_max_len,
        "concurrency": req.concurrency, "input_len": req.input_len, "output_len": req.output_len,
        "vllm_version": version, "vllm_minor": v.minor if v.major == 0 else 1000,
    })


# ------------------------------------------------------------------------------------------- settle loop


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
class Candidate:
    layout: Layout
    kv_cache_dtype: str
    memory: MemoryResult
    forbidden: list[dict[str, str]]
    preferred_by: list[dict[str, Any]] = field(default_factory=list)

    @property
    def preference(self) -> float:
        return float(sum(float(p["score"]) for p in self.preferred_by))

    @property
    def key(self) -> str:
        return f"{self.layout.key}-kv{self.kv_cache_dtype}"


def _kv_options(pinned: str | None, gpu_fp8: bool) -> list[str]:
    if pinned:
        if pinned not in KV_DTYPES:
            raise InputError(f"--kv-cache-dtype: unknown value {pinned!r} (expected {', '.join(KV_DTYPES)})")
        return [pinned]
    return ["auto", "fp8"] if gpu_fp8 else ["auto"]


def _pressure(req: PlanRequest, mem: MemoryResult, dp: int) -> float:
    want = req.concurrency * (req.input_len + req.output_len)
    have = max(1, mem.kv_cache_tokens * dp)
    return want / have


def _candidate_fact(c: Candidate, req: PlanRequest, quant: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    m = c.memory
    return normalise_fact("candidate", c.key, {
        "tensor_parallel_size": c.layout.tp, "pipeline_parallel_size": c.layout.pp,
        "data_parallel_size": c.layout.dp, "gpus_used": c.layout.gpus,
        "quantization": quant or "none", "kv_cache_dtype": c.kv_cache_dtype, "fits": m.fits,
        "weights_fit": m.weights_fit,
        "kv_pressure": round(_pressure(req, m, c.layout.dp), 6),
        "weights_fraction": round(m.weights_bytes / m.budget_bytes, 6) if m.budget_bytes else 1.0,
        "kv_cache_gib": round(m.kv_cache_bytes / GiB, 4), "kv_cache_tokens": m.kv_cache_tokens,
        "max_concurrency": round(m.max_concurrency, 4), "max_fitting_model_len": m.max_fitting_model_len, **flags,
    })


def _flags(cands: list[Candidate], settings: Settings) -> dict[str, dict[str, bool]]:
    """Ranking features the rules match on (which layout is smallest-fitting, largest-TP, ...)."""
    base = [c for c in cands if c.kv_cache_dtype == "auto" or len({x.kv_cache_dtype for x in cands}) == 1]
    allowed = [c for c in base if not c.forbidden]
    order = sorted(allowed, key=lambda c: (c.layout.tp * c.layout.pp, c.layout.pp, c.layout.tp))
    min_fit = next((c for c in order if c.memory.fits), None)
    min_wfit = next((c for c in order if c.memory.weights_fit), None) if min_fit is None else None
    single = [c for c in allowed if c.layout.pp == 1]
    max_tp = max(single, key=lambda c: c.layout.tp, default=None)
    min_tp = min(base, key=lambda c: (c.layout.tp * c.layout.pp, c.layout.pp), default=None)
    scored = [c for c in allowed if c.memory.fits and c.preference > 0]
    preferred = min(scored, key=lambda c: (-c.preference, c.layout.tp * c.layout.pp, c.layout.pp), default=None)
    out = {}
    for c in cands:
        is_base = c in base
        sel_layout = settings.layout is not None and c.layout == settings.layout
        out[c.key] = {
            "is_min_fitting_tp": c is min_fit, "is_min_weights_fit_tp": c is min_wfit, "is_max_tp": c is max_tp,
            "is_min_tp": c is min_tp and not any(x.memory.weights_fit for x in base),
            "is_baseline_kv": is_base, "is_selected_layout": sel_layout,
            "is_selected": sel_layout and c.kv_cache_dtype == settings.kv_cache_dtype,
            "is_preferred": c is preferred, "preference": c.preference, "forbidden": bool(c.forbidden),
        }
    return out


# ------------------------------------------------------------------------------------------- plan


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


def _memory(ctx: PlanContext, layout: Layout, kv: str, s: Settings, max_model_len: int, scales: dict[str, float],
            linear_bytes: float | None = None) -> MemoryResult:
    act = DTYPE_BYTES[ctx.dtype]
    linear = linear_bytes or (act if ctx.quant is None else float(ctx.run.params["linear_bytes_per_param"]))
    return account(ctx.arch, MemoryInputs(
        total_bytes=ctx.hw.memory_bytes, tp=layout.tp, pp=layout.pp, dtype=ctx.dtype, linear_bytes_per_param=linear,
        kv_cache_dtype=kv, gpu_memory_utilization=s.util, max_model_len=max_model_len, max_num_seqs=s.max_num_seqs,
        max_num_batched_tokens=s.max_num_batched_tokens, block_size=s.block_size, enforce_eager=s.enforce_eager,
        scales=scales, free_bytes=ctx.hw.free_bytes, dp=layout.dp if ctx.arch.is_moe else 1,
        ep=bool(ctx.req.pinned.enable_expert_parallel) and ctx.arch.is_moe, sampler_sort=sampler_sort(ctx),
    ), ctx.run.params)


def sampler_sort(ctx: PlanContext) -> bool:
    """Whether vLLM's sampler warm-up sorts the whole vocabulary: the pinned --sampler, else the version's default."""
    if ctx.req.pinned.sampler:
        return ctx.req.pinned.sampler == "sort"
    return bool(ctx.run.params["sampler_sort"])


def _scales(ctx: PlanContext) -> dict[str, float]:
    out: dict[str, float] = {}
    for qty, items in ctx.run.stages["baseline"].scales.items():
        factor = 1.0
        for it in items:
            factor *= float(it["factor"])
        out[qty] = factor
    return out


def _initial_settings(ctx: PlanContext) -> Settings:
    p, pin = ctx.run.params, ctx.req.pinned
    return Settings(
        util=pin.gpu_memory_utilization or float(p["default_gpu_memory_utilization"]),
        max_num_seqs=pin.max_num_seqs or int(p["default_max_num_seqs"]),
        max_num_batched_tokens=pin.max_num_batched_tokens or int(p["default_max_num_batched_tokens"]),
        block_size=int(p["default_block_size"]), enforce_eager=bool(pin.enforce_eager),
        kv_cache_dtype=pin.kv_cache_dtype or "auto", layout=None,
    )


def _pinned_decisions(req: PlanRequest, quant: str | None) -> dict[str, Any]:
    pin = req.pinned
    out = {k: getattr(pin, k) for k in ("tensor_parallel_size", "pipeline_parallel_size", "kv_cache_dtype",
                                         "gpu_memory_utilization", "max_model_len", "max_num_seqs",
                                         "max_num_batched_tokens", "enforce_eager") if getattr(pin, k) is not None}
    if pin.quantization:
        out["quantization"] = quant
    return out


def _check_decisions(decisions: dict[str, Decision]) -> None:
    """A rule's value that vLLM would reject (from a ref or a param set at run time) is a pack error."""
    from planner.errors import PackError
    from planner.policy.schema import check_decision_value

    for key, d in decisions.items():
        if d.by == "user":
            continue
        problem = check_decision_value(key, d.value)
        if problem:
            raise PackError(f"rule {d.by} recommends {key} = {d.value!r}: {problem}")


def _settings_from(decisions: dict[str, Decision], prev: Settings, cands: list[Candidate]) -> Settings:
    def val(key: str, default: Any) -> Any:
        return decisions[key].value if key in decisions and decisions[key].value is not None else default

    layout = prev.layout
    if "tensor_parallel_size" in decisions:
        tp, pp = int(val("tensor_parallel_size", 1)), int(val("pipeline_parallel_size", 1))
        layout = next((c.layout for c in cands if c.layout.tp == tp and c.layout.pp == pp), layout)
    return Settings(util=float(val("gpu_memory_utilization", prev.util)),
                    max_num_seqs=int(val("max_num_seqs", prev.max_num_seqs)),
                    max_num_batched_tokens=int(val("max_num_batched_tokens", prev.max_num_batched_tokens)),
                    block_size=int(val("block_size", prev.block_size)),
                    enforce_eager=bool(val("enforce_eager", prev.enforce_eager)),
                    kv_cache_dtype=str(val("kv_cache_dtype", prev.kv_cache_dtype)), layout=layout)


def _launchable(ctx: PlanContext, lays: list[Layout]) -> list[Layout]:
    """The layouts the target vLLM version can launch on this cluster shape: where it lacks the flags
    (or vLLM the support) for a layout's data parallelism, the layout runs one replica instead."""
    out: list[Layout] = []
    for lay in lays:
        if not _launch_ok(ctx, lay):
            lay = Layout(tp=lay.tp, pp=lay.pp, dp=1)
            if not _launch_ok(ctx, lay):
                continue
        if lay not in out:
            out.append(lay)
    return out


def _launch_ok(ctx: PlanContext, lay: Layout) -> bool:
    from planner.artifacts.flags import flag_exists

    cfg = {"tensor_parallel_size": lay.tp, "pipeline_parallel_size": lay.pp, "data_parallel_size": lay.dp}
    try:
        lo = plan_launch(cfg, nodes=ctx.hw.nodes, gpus_per_node=ctx.hw.gpus_per_node, is_moe=ctx.arch.is_moe,
                         model=ctx.arch.name)
    except InputError:
        return False
    needed = (["--data-parallel-size"] if lo.data_parallel_in_engine > 1 else []) + \
        (["--data-parallel-size-local", "--data-parallel-backend"] if lo.data_parallel_local else [])
    return all(flag_exists(flag, ctx.version) for flag in needed)


def _settle(ctx: PlanContext, base_facts: list[dict[str, Any]]
            ) -> tuple[dict[str, Decision], list[Candidate], Settings]:
    req, arch, hw = ctx.req, ctx.arch, ctx.hw
    lays = _launchable(ctx, layouts(arch, total_gpus=hw.count, gpus_per_node=hw.gpus_per_node, nodes=hw.nodes,
                                    tp=req.pinned.tensor_parallel_size, pp=req.pinned.pipeline_parallel_size))
    if not lays:
        pin_tp, pin_pp = req.pinned.tensor_parallel_size, req.pinned.pipeline_parallel_size
        reason = (tp_is_valid(arch, pin_tp) if pin_tp else None) or (pp_is_valid(arch, pin_pp) if pin_pp else None)
        if pin_tp and (pin_tp * (pin_pp or 1) > hw.count):
            reason = f"--tp {pin_tp} x --pp {pin_pp or 1} needs more than the {hw.count} GPU(s) planned for"
        raise InputError(f"no parallel layout vLLM can run: {reason or 'tensor parallel does not divide the heads'}")
    kv_opts = _kv_options(req.pinned.kv_cache_dtype, bool(hw.spec and hw.spec.fp8_supported))
    scales = _scales(ctx)
    pinned = _pinned_decisions(req, ctx.quant)
    settings = _initial_settings(ctx)
    decisions: dict[str, Decision] = {}
    cands: list[Candidate] = []
    for _ in range(MAX_SETTLE_PASSES):
        cands = [Candidate(layout=lay, kv_cache_dtype=kv, forbidden=[],
                           memory=_memory(ctx, lay, kv, settings, ctx.target_len, scales))
                 for lay in lays for kv in kv_opts]
        flags = _flags(cands, settings)
        facts = [_candidate_fact(c, req, ctx.quant, flags[c.key]) for c in cands]
        sizing = ctx.run.run_stage("sizing", base_facts + facts)
        for c in cands:
            c.forbidden = sizing.forbidden.get(f"candidate:{c.key}", [])
            c.preferred_by = sizing.preferences.get(f"candidate:{c.key}", [])
        flags = _flags(cands, settings)
        facts = [_candidate_fact(c, req, ctx.quant, flags[c.key]) for c in cands]
        rec = ctx.run.run_stage("recommend", base_facts + facts)
        decisions = resolve(rec.proposals, pinned)
        _check_decisions(decisions)
        new = _settings_from(decisions, settings, cands)
        if new == settings:
            break
        settings = new
    return decisions, cands, settings


def _no_rule(key: str, value: Any, why: str) -> Decision:
    return Decision(key=key, value=value, by="planner", reason=why)


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
    run.run_stage("baseline", [gpu_fact(hw), model_fact(arch, quant, dtype), request_fact(req, version, model_max_len),
                               normalise_fact("cluster", "0", {"gpus": hw.count, "nodes": hw.nodes,
                                                               "gpus_per_node": hw.gpus_per_node,
                                                               "interconnect": hw.interconnect})])
    if quant is not None and run.param_set_by.get("linear_bytes_per_param") == "default":
        raise InputError(f"no rule pack sets the bytes per parameter for quantization {quant!r}; "
                         "add a baseline rule that sets linear_bytes_per_param")
    return ctx


def plan(req: PlanRequest, packset: PackSet | None = None, *, arch: ModelArch | None = None,
         hw: Hardware | None = None) -> PlanResponse:
    """Plan one deployment. Infeasible plans are returned with feasible=false, never raised."""
    return plan_with_context(req, packset, arch=arch, hw=hw)[0]


def audit_record(resp: PlanResponse, ctx: PlanContext) -> dict[str, Any]:
    """One --audit-log record: everything needed to see why this plan came out as it did."""
    import datetime

    from planner.policy import engine

    facts = ctx.run.input_facts()
    blob = json.dumps(facts, sort_keys=True).encode()
    engine_version = engine.engine_version() if ctx.run.engine_name == "durable_rules" else __version__
    return {
        "schema": "vllm-planner/audit/1", "decision_id": resp.plan_id,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "planner": {"version": __version__, "engine": {"name": ctx.run.engine_name, "version": engine_version}},
        "request": ctx.req.model_dump(mode="json"),
        "packs": resp.audit["packs"], "params": resp.audit["params"], "overrides": resp.audit["overrides"],
        "input": {"facts_sha256": hashlib.sha256(blob).hexdigest(), "facts": facts},
        "firings": resp.audit["firings"],
        "decisions": {k: v.model_dump(mode="json") for k, v in resp.decisions.items()},
        "rule_results": ctx.run.rule_results(),
        "warnings": [w.model_dump(mode="json") for w in resp.warnings],
        "config": resp.config.model_dump(mode="json"), "feasible": resp.feasible,
        "timing_ms": {k: round(v, 2) for k, v in ctx.run.timing_ms.items()},
        "evaluations": ctx.run.evaluations,
    }


def plan_with_context(req: PlanRequest, packset: PackSet | None = None, *, arch: ModelArch | None = None,
                      hw: Hardware | None = None) -> tuple[PlanResponse, PlanContext]:
    """plan(), also returning the context (for the audit log).

    On a probed machine with mixed GPU models the best homogeneous group is planned first; when it
    cannot hold the model, the whole machine (bounded by its smallest GPU) is tried next.
    """
    if hw is None and not req.gpu and not (req.vram_gib and not req.from_file):
        options = probed_hardware(req, int(req.vram_gib * GiB) if req.vram_gib else None)
        packset = packset or load_packset(tuple(req.rules))
        first: tuple[PlanResponse, PlanContext] | None = None
        for opt in options:
            result = _plan_on(req, packset, arch, opt)
            first = first or result
            if result[0].feasible:
                return result
            arch = result[1].arch
        assert first is not None
        return first
    return _plan_on(req, packset, arch, hw)


def _plan_on(req: PlanRequest, packset: PackSet | None, arch: ModelArch | None, hw: Hardware | None
             ) -> tuple[PlanResponse, PlanContext]:
    ctx = plan_context(req, packset, arch=arch, hw=hw)
    stages = ctx.run.stages
    base_facts = [gpu_fact(ctx.hw, ctx.run.params), model_fact(ctx.arch, ctx.quant, ctx.dtype),
                  request_fact(req, ctx.version, ctx.model_max_len),
                  normalise_fact("cluster", "0", {"gpus": ctx.hw.count, "nodes": ctx.hw.nodes,
                                                  "gpus_per_node": ctx.hw.gpus_per_node,
                                                  "interconnect": ctx.hw.interconnect})]
    decisions, cands, settings = _settle(ctx, base_facts)
    return _assemble(ctx, decisions, cands, settings, stages), ctx


def _assemble(ctx: PlanContext, decisions: dict[str, Decision], cands: list[Candidate], settings: Settings,
              stages: dict[str, Any]) -> PlanResponse:
    from planner.artifacts.serve import serve_args, serve_command

    req, arch, hw = ctx.req, ctx.arch, ctx.hw
    layout = settings.layout
    if layout is None:  # no rule chose a layout: every fitting one was dropped by sizing rules
        fitting = sorted((c for c in cands if c.memory.weights_fit), key=lambda c: (c.layout.gpus, c.layout.pp))
        layout = (fitting[0] if fitting else min(cands, key=lambda c: (c.layout.gpus, c.layout.pp))).layout
        why = "every layout that fits was dropped by sizing rules; showing the smallest"
        for key, v in (("tensor_parallel_size", layout.tp), ("pipeline_parallel_size", layout.pp),
                       ("data_parallel_size", layout.dp)):
            decisions.setdefault(key, _no_rule(key, v, why))
    decisions.setdefault("pipeline_parallel_size", _no_rule("pipeline_parallel_size", layout.pp, "follows the layout"))
    decisions.setdefault("data_parallel_size", _no_rule("data_parallel_size", layout.dp, "GPUs left over"))
    max_len = int(decisions["max_model_len"].value) if "max_model_len" in decisions else ctx.target_len
    kv = settings.kv_cache_dtype
    mem = _memory(ctx, layout, kv, settings, max_len, _scales(ctx))
    warnings = [w for s in ("baseline", "sizing", "recommend") if s in stages for w in stages[s].warnings
                if s != "sizing"]
    warnings += [{"code": "W-PLANNER", "message": n, "rule": None} for n in ctx.run.notices]
    feasible, reason = True, None
    chosen = next((c for c in cands if c.layout == layout and c.kv_cache_dtype == kv), None)
    if not mem.weights_fit:
        feasible = False
        need = mem.weights_bytes + mem.activation_peak_bytes + mem.non_torch_bytes
        reason = (f"weights and overheads need {need / GiB:.2f} GiB per GPU but the budget is "
                  f"{mem.budget_bytes / GiB:.2f} GiB")
    elif chosen is not None and chosen.forbidden:  # the policy, not the KV size, is then the root cause
        feasible = False
        reason = "forbidden by policy: " + "; ".join(f"{f['rule']}: {f['reason']}" for f in chosen.forbidden)
    elif not mem.fits:
        feasible = False
        need = mem.bytes_per_block * -(-max_len // settings.block_size)
        reason = (f"one {max_len}-token sequence needs {need / GiB:.2f} GiB of KV cache but only "
                  f"{mem.kv_cache_bytes / GiB:.2f} GiB is left")
    if req.input_len + req.output_len > max_len:  # vLLM rejects such requests (prompt + output > max_model_len)
        warnings.append({"code": "W-CONTEXT", "rule": None, "message": (
            f"requests of {req.input_len} + {req.output_len} tokens exceed max_model_len {max_len}: vLLM rejects "
            "them; speeds assume they fit")})
    free_check = _free_memory_check(ctx, mem)
    if free_check:
        warnings.append({"code": "W-FREE-MEMORY", "rule": None, "message": free_check})
        if feasible:
            feasible, reason = False, free_check
    placement = nvlink_group(hw.selection, layout.tp, hw.links) if hw.selection else None
    tp_group = placement.gpus if placement else []
    if placement and placement.note:
        warnings.append({"code": "W-PLACEMENT", "rule": None, "message": placement.note})
    if placement and placement.nvlink is not None:  # the speed model uses the link this group really has
        hw = replace(hw, interconnect="nvlink" if placement.nvlink else "pcie")
        ctx = replace(ctx, hw=hw)
    perf = _perf(ctx, layout, mem, settings) if mem.weights_fit else None  # nothing runs: no speed to report
    if perf is None and mem.weights_fit:
        warnings.append({"code": "W-PERF-UNKNOWN", "rule": None,
                         "message": "no bandwidth/FLOPs for this GPU; speeds are reported as 0"})
    config = {
        "tensor_parallel_size": layout.tp, "pipeline_parallel_size": layout.pp, "data_parallel_size": layout.dp,
        "quantization": ctx.quant, "kv_cache_dtype": kv, "gpu_memory_utilization": settings.util,
        "max_model_len": max_len, "max_num_seqs": settings.max_num_seqs,
        "max_num_batched_tokens": settings.max_num_batched_tokens, "enforce_eager": settings.enforce_eager,
        "block_size": settings.block_size, "dtype": ctx.dtype,
    }
    audit = ctx.run.audit()
    audit["planner"] = {"version": __version__, "engine": ctx.run.engine_name}
    body = {
        "planner_version": __version__, "vllm_version": ctx.version, "feasible": feasible,
        "infeasible_reason": reason,
        "model": {"name": arch.name, "source": arch.source, "architecture": (arch.architectures or ("?",))[0],
                  "params": total_params(arch), "active_params": active_params(arch), "dtype": ctx.dtype,
                  "quantization": ctx.quant, "max_position_embeddings": arch.max_position_embeddings,
                  "model_max_len": ctx.model_max_len, "attention": arch.attention_kind},
        "hardware": {"gpu": hw.name, "catalog_id": hw.spec.id if hw.spec else None, "gpu_count": hw.count,
                     "nodes": hw.nodes, "gpus_per_node": hw.gpus_per_node, "memory_bytes_per_gpu": hw.memory_bytes,
                     "interconnect": hw.interconnect, "probed": hw.probed, **_devices_json(hw, layout, tp_group)},
        "config": config,
        "memory": {"per_gpu": {k: getattr(mem, k) for k in ("total_bytes", "budget_bytes", "weights_bytes",
                                                            "activation_peak_bytes", "non_torch_bytes",
                                                            "cuda_graph_bytes", "kv_cache_bytes", "free_bytes")},
                   "kv_cache_tokens": mem.kv_cache_tokens, "max_concurrency": round(mem.max_concurrency, 4),
                   "headroom_bytes": mem.headroom_bytes, "oom_risk": mem.oom_risk,
                   "cuda_graph_in_budget": mem.cuda_graph_in_budget, "bytes_per_block": mem.bytes_per_block,
                   "num_blocks": mem.num_blocks, "kv_bytes_per_token": mem.kv_bytes_per_token,
                   "weights_total_bytes": mem.weights_total_bytes,
                   "sampler": "sort" if sampler_sort(ctx) else "fused"},
        "performance": _perf_json(req, perf, ctx.run.params),
        "decisions": {k: _decision_json(d) for k, d in sorted(decisions.items())},
        "audit": audit,
        "warnings": warnings,
        "alternatives": _alternatives(ctx, cands, layout, kv, settings, max_len),
        "fixes": [] if feasible else _fixes(ctx, layout, kv, settings, mem, max_len),
        "dropped": [{"tensor_parallel_size": c.layout.tp, "pipeline_parallel_size": c.layout.pp,
                     "data_parallel_size": c.layout.dp, "kv_cache_dtype": c.kv_cache_dtype,
                     "reasons": [f"{f['rule']}: {f['reason']}" for f in c.forbidden]} for c in cands if c.forbidden],
    }
    identity = {"config": config, "model": arch.name, "gpu": hw.name, "packs": ctx.packset.sha256, "v": ctx.version}
    if req.pinned.sampler:  # sizes the activation peak; not a vllm serve setting, so not in `config`
        identity["sampler"] = req.pinned.sampler
    body["plan_id"] = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    launch = _launch(ctx, config, feasible)
    body["launch"] = {**asdict(launch), "multi_node": launch.multi_node}
    body["serve_command"] = serve_command(
        arch.name, serve_args(config, ctx.run.params, pinned=req.pinned, launch=launch, version=ctx.version),
        visible_devices=body["hardware"].get("visible_devices"))
    return PlanResponse.model_validate(body)


def _launch(ctx: PlanContext, config: dict[str, Any], feasible: bool) -> Launch:
    """The deployment shape; a shape vLLM cannot run is an input error, unless the plan is infeasible anyway."""
    try:
        return plan_launch(config, nodes=ctx.hw.nodes, gpus_per_node=ctx.hw.gpus_per_node, is_moe=ctx.arch.is_moe,
                           model=ctx.arch.name)
    except InputError:
        if feasible:
            raise
        gpus = config["tensor_parallel_size"] * config["pipeline_parallel_size"]
        return Launch(nodes=1, gpus_per_pod=gpus, data_parallel_in_engine=config["data_parallel_size"])


def _free_memory_check(ctx: PlanContext, mem: MemoryResult) -> str | None:
    """vLLM refuses to start when the free memory it finds is below its budget; say so with the numbers."""
    hw = ctx.hw
    if hw.free_bytes is None:
        return None
    usable = hw.free_bytes - int(ctx.run.params["context_baseline_gib"] * GiB)
    if usable >= mem.budget_bytes:
        return None
    max_util = free_memory_fields(hw, ctx.run.params)["max_util_for_free"]
    procs = [p for d in (hw.selection.devices if hw.selection else ()) for p in d.processes]
    held = f"; held by {', '.join(procs)}" if procs else ""
    kv_hint = (", or --kv-cache-memory-bytes with what is left (vLLM >= 0.11 skips this check)"
               if Version(ctx.version) >= Version("0.11.0") else "")
    return (f"only {hw.free_bytes / GiB:.2f} GiB of {hw.memory_bytes / GiB:.2f} GiB is free "
            f"({usable / GiB:.2f} GiB after vLLM's own CUDA context) but the budget is {mem.budget_bytes / GiB:.2f} "
            f"GiB, short by {(mem.budget_bytes - usable) / GiB:.2f} GiB: vLLM will refuse to start{held}. "
            f"Use --gpu-memory-utilization {max_util:g} or less{kv_hint}, free the GPU, or plan the empty GPU "
            "with --ignore-used")


def _devices_json(hw: Hardware, layout: Layout, tp_group: list[int]) -> dict[str, Any]:
    sel = hw.selection
    if sel is None:
        return {}
    chosen = {id(d) for d in sel.devices}
    devices = [{"index": d.index, "name": d.name, "mig_profile": d.mig_profile, "memory_total_bytes": d.memory_bytes,
                "free_bytes": d.free_bytes, "processes": list(d.processes), "selected": id(d) in chosen}
               for d in sel.all_devices]
    visible = sel.visible_devices
    if layout.dp == 1 and layout.pp == 1 and tp_group and len(tp_group) < len(sel.devices):
        visible = ",".join(str(i) for i in tp_group)  # pin the NVLink-joined group
    return {"devices": devices, "visible_devices": visible, "tp_group": tp_group if layout.tp > 1 else [],
            "notes": list(sel.notes)}


def _decision_json(d: Decision) -> dict[str, Any]:
    out = d.to_json()
    if d.key == "quantization" and out["value"] == "none":
        out["value"] = None  # facts spell "no quantization" as "none"; the contract (like vLLM) uses null
    return out


# ------------------------------------------------------------------------------------------- speed (issue 6)


def _peak_flops(ctx: PlanContext, fp8_weights: bool = False) -> float | None:
    """Dense peak FLOP/s of the dtype the matmuls run in (the pack's compute_dtype; fp8 for a what-if FP8 row)."""
    spec = ctx.hw.spec
    if spec is None:
        return None
    key = "fp8" if fp8_weights else str(ctx.run.params["compute_dtype"])
    if key == "bf16" and ctx.dtype == "float16":
        key = "fp16"
    tflops = spec.peak_tflops.get(key) or spec.peak_tflops.get("bf16") or spec.peak_tflops.get("fp16")
    return tflops * 1e12 if tflops else None


def _perf_inputs(ctx: PlanContext, layout: Layout, mem: MemoryResult, settings: Settings,
                 linear_bytes: float | None = None) -> PerfInputs:
    spec, arch, p = ctx.hw.spec, ctx.arch, ctx.run.params
    peak = _peak_flops(ctx, fp8_weights=linear_bytes is not None and linear_bytes == _fp8_weights(ctx))
    per_param = linear_bytes or (DTYPE_BYTES[ctx.dtype] if ctx.quant is None else float(p["linear_bytes_per_param"]))
    ep = layout.dp if ctx.req.pinned.enable_expert_parallel and arch.is_moe else 1
    experts = int(routed_expert_params(arch) * per_param / (layout.tp * layout.pp * ep)) if arch.moe else 0
    link = (spec.interconnect.bandwidth_bytes_per_s
            if spec is not None and ctx.hw.interconnect == spec.interconnect.type else None)
    return PerfInputs(
        weights_bytes_per_gpu=mem.weights_bytes, kv_bytes_per_token_per_gpu=mem.kv_bytes_per_token,
        active_params=active_params(arch), num_layers=arch.num_layers, num_attention_heads=arch.num_attention_heads,
        head_dim=arch.head_dim, tp=layout.tp, pp=layout.pp, dp=layout.dp,
        bandwidth_bytes_per_s=spec.hbm_bandwidth_bytes_per_s * ctx.hw.fraction if spec else None,
        peak_flops=peak * ctx.hw.fraction if peak else None,
        interconnect=ctx.hw.interconnect, concurrency=ctx.req.concurrency, input_len=ctx.req.input_len,
        output_len=ctx.req.output_len, max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens, kv_cache_tokens=mem.kv_cache_tokens,
        hidden_size=arch.hidden_size, act_bytes=DTYPE_BYTES[ctx.dtype],
        expert_bytes_per_gpu=min(experts, mem.weights_bytes),
        num_experts=arch.moe.num_experts if arch.moe else 0,
        experts_per_token=arch.moe.experts_per_token if arch.moe else 0,
        active_expert_params=(routed_expert_params(arch) * arch.moe.experts_per_token // arch.moe.num_experts
                              if arch.moe else 0),
        num_moe_layers=(len(arch.moe.moe_layers) or arch.num_layers) if arch.moe else 0,
        link_bandwidth_bytes_per_s=link, nodes=ctx.hw.nodes,
    )


def _perf(ctx: PlanContext, layout: Layout, mem: MemoryResult, settings: Settings,
          linear_bytes: float | None = None) -> PerfResult | None:
    return estimate(_perf_inputs(ctx, layout, mem, settings, linear_bytes), ctx.run.params)


def plan_perf_inputs(resp: PlanResponse, ctx: PlanContext) -> PerfInputs:
    """The performance model's inputs for the configuration a plan chose (benchmarks/perf_accuracy.py
    re-evaluates them with other params while fitting)."""
    cfg, m = resp.config, resp.memory
    layout = Layout(tp=cfg.tensor_parallel_size, pp=cfg.pipeline_parallel_size, dp=cfg.data_parallel_size)
    hw = replace(ctx.hw, interconnect=resp.hardware.interconnect)
    settings = replace(_initial_settings(ctx), max_num_seqs=cfg.max_num_seqs,
                       max_num_batched_tokens=cfg.max_num_batched_tokens, layout=layout)
    mem = _memory(ctx, layout, cfg.kv_cache_dtype, settings, cfg.max_model_len, _scales(ctx))
    return _perf_inputs(replace(ctx, hw=hw), layout, replace(mem, kv_cache_tokens=m.kv_cache_tokens), settings)


def _perf_json(req: PlanRequest, perf: PerfResult | None, params: dict[str, Any]) -> dict[str, Any]:
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


def _option_row(ctx: PlanContext, layout: Layout, kv: str, mem: MemoryResult, s: Settings, *, change: str,
                forbidden: list[str], quantization: str | None, max_model_len: int,
                linear_bytes: float | None = None, preferred_by: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    perf = _perf(ctx, layout, mem, replace(s, layout=layout, kv_cache_dtype=kv), linear_bytes) if mem.weights_fit \
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


def _fp8_weights(ctx: PlanContext) -> float | None:
    """Bytes per linear weight of an FP8 version of this model, when that is a change worth listing."""
    if ctx.quant is not None or not (ctx.hw.spec and ctx.hw.spec.fp8_supported):
        return None
    return float(ctx.run.params["wbytes_fp8"])


def _alternatives(ctx: PlanContext, cands: list[Candidate], layout: Layout, kv: str, s: Settings, max_len: int
                  ) -> list[dict[str, Any]]:
    """The best few other configurations (layout, KV dtype, FP8 weights), from the candidates already sized."""
    rows = []
    for c in cands:
        if c.layout == layout and c.kv_cache_dtype == kv:
            continue
        change = [f"TP{c.layout.tp} PP{c.layout.pp} DP{c.layout.dp}"] if c.layout != layout else []
        change += [f"KV {c.kv_cache_dtype}"] if c.kv_cache_dtype != kv else []
        rows.append(_option_row(ctx, c.layout, c.kv_cache_dtype, c.memory, s, change=", ".join(change),
                                forbidden=[f"{f['rule']}: {f['reason']}" for f in c.forbidden],
                                quantization=ctx.quant, max_model_len=max_len, preferred_by=c.preferred_by))
    fp8 = _fp8_weights(ctx)
    if fp8 is not None:
        mem = _memory(ctx, layout, kv, replace(s, layout=layout), max_len, _scales(ctx), fp8)
        rows.append(_option_row(ctx, layout, kv, mem, s, change="FP8 weights (--quantization fp8)", forbidden=[],
                                quantization="fp8", max_model_len=max_len, linear_bytes=fp8))
    rows.sort(key=lambda r: objective(ctx.req.mode, r))
    return rows[:int(ctx.run.params["alternatives_shown"])]


def _fix(change: str, flags: str, mem: MemoryResult, detail: str) -> dict[str, Any]:
    return {"change": change, "flags": flags, "fits": mem.fits, "kv_cache_tokens": mem.kv_cache_tokens,
            "max_concurrency": round(mem.max_concurrency, 4), "weights_bytes": mem.weights_bytes,
            "kv_cache_bytes": mem.kv_cache_bytes, "detail": detail}


def _fixes(ctx: PlanContext, layout: Layout, kv: str, s: Settings, mem: MemoryResult, max_len: int
           ) -> list[dict[str, Any]]:
    """Single changes that make an infeasible plan fit, each re-sized with the same accounting."""
    scales, out = _scales(ctx), []
    need = ctx.req.input_len + ctx.req.output_len
    if mem.weights_fit and 0 < mem.max_fitting_model_len < max_len:
        n = mem.max_fitting_model_len
        m = _memory(ctx, layout, kv, s, n, scales)
        note = "" if n >= need else f" (shorter than the {need} tokens a request needs)"
        out.append(_fix("fewer context tokens", f"--max-model-len {n}", m,
                        f"{m.kv_cache_tokens:,} KV tokens hold {n:,}-token sequences{note}"))
    if kv == "auto" and ctx.hw.spec and ctx.hw.spec.fp8_supported:
        m = _memory(ctx, layout, "fp8", replace(s, kv_cache_dtype="fp8"), max_len, scales)
        out.append(_fix("FP8 KV cache", "--kv-cache-dtype fp8", m,
                        f"KV capacity {mem.kv_cache_tokens:,} -> {m.kv_cache_tokens:,} tokens"))
    fp8 = _fp8_weights(ctx)
    if fp8 is not None:
        m = _memory(ctx, layout, kv, s, max_len, scales, fp8)
        out.append(_fix("quantized checkpoint (FP8)", "--quantization fp8 (or an FP8 checkpoint)", m,
                        f"weights {mem.weights_bytes / GiB:.2f} -> {m.weights_bytes / GiB:.2f} GiB per GPU"))
    elif ctx.quant is None:
        w4 = float(ctx.run.params["wbytes_awq_int4"])
        m = _memory(ctx, layout, kv, s, max_len, scales, w4)
        out.append(_fix("quantized checkpoint (4-bit)", "an AWQ/GPTQ 4-bit checkpoint of this model", m,
                        f"weights {mem.weights_bytes / GiB:.2f} -> {m.weights_bytes / GiB:.2f} GiB per GPU"))
    out.extend(_more_gpus(ctx, layout, kv, s, max_len, scales))
    if kv != "auto" and not ctx.req.pinned.kv_cache_dtype:  # sized with this KV dtype: the fix must carry it
        for f in out:
            if not f["flags"].startswith("--kv-cache-dtype"):
                f["flags"] += f" --kv-cache-dtype {kv}"
    return [f for f in out if f["fits"]]


def _more_gpus(ctx: PlanContext, layout: Layout, kv: str, s: Settings, max_len: int, scales: dict[str, float]
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
        m = _memory(ctx, lay, kv, replace(s, layout=lay), max_len, scales)
        if m.fits:
            n = -(-lay.gpus // per_node)
            nodes = f" --nodes {n} --gpus-per-node {per_node}" if n > 1 else ""
            return [_fix("more GPUs", f"--gpus {lay.gpus}{nodes} --tp {lay.tp}" + (f" --pp {lay.pp}" if lay.pp > 1
                                                                                    else ""), m,
                         f"{lay.gpus} GPUs (TP{lay.tp} PP{lay.pp}): {m.kv_cache_tokens:,} KV tokens")]
    return []


def generate(req: PlanRequest, out: Path, *, force: bool = False) -> tuple[PlanResponse, list[str]]:
    """Plan and write the deployment artifacts to `out` (all or nothing). Infeasible plans write nothing."""
    from planner.artifacts.bundle import MANIFEST, render_bundle
    from planner.files import write_tree

    resp, ctx = plan_with_context(req)
    if not resp.feasible:
        return resp, []
    files = render_bundle(resp, req, ctx.run.params, base=Path.cwd())
    write_tree(out, files, force=force, marker=MANIFEST)
    return resp, sorted(files)


def append_audit(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write (a reader never sees half a record)."""
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    if path.is_dir():
        raise InputError(f"--audit-log {path}: is a directory")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as e:
        raise InputError(f"--audit-log {path}: cannot append: {e.strerror}") from None


def sweep(req: PlanRequest, *, max_model_lens: list[int] | None = None, utilizations: list[float] | None = None,
          packset: PackSet | None = None) -> list[dict[str, Any]]:
    """Every (layout x KV dtype x weights x max_model_len x utilization) vLLM could run here, with memory, speed
    at the request's workload and the sizing rules' verdict, best first under the mode's objective. The whole
    grid goes through the rules engine as one batch of candidate facts."""
    ctx = plan_context(req, packset)
    s0 = _initial_settings(ctx)
    lens = max_model_lens or [ctx.target_len]
    too_long = [n for n in lens if n > ctx.model_max_len]
    if too_long:
        raise InputError(f"--max-model-lens {too_long[0]} exceeds the model's maximum length {ctx.model_max_len}")
    utils = utilizations or [s0.util]
    lays = _launchable(ctx, layouts(ctx.arch, total_gpus=ctx.hw.count, gpus_per_node=ctx.hw.gpus_per_node,
                                    nodes=ctx.hw.nodes, tp=req.pinned.tensor_parallel_size,
                                    pp=req.pinned.pipeline_parallel_size))
    kv_opts = _kv_options(req.pinned.kv_cache_dtype, bool(ctx.hw.spec and ctx.hw.spec.fp8_supported))
    weights: list[tuple[str | None, float | None]] = [(ctx.quant, None)]
    fp8 = None if req.pinned.quantization else _fp8_weights(ctx)
    if fp8 is not None:
        weights.append(("fp8", fp8))
    scales = _scales(ctx)
    grid = []
    for lay, kv, (quant, wbytes), length, util in itertools.product(lays, kv_opts, weights, lens, utils):
        s = replace(s0, util=util, layout=lay, kv_cache_dtype=kv)
        cand = Candidate(layout=lay, kv_cache_dtype=kv, forbidden=[],
                         memory=_memory(ctx, lay, kv, s, min(length, ctx.model_max_len), scales, wbytes))
        grid.append((cand, length, s, quant, wbytes))
    facts = []
    for i, (c, _, _, quant, _) in enumerate(grid):
        fact = _candidate_fact(c, req, quant, {})
        facts.append({**fact, "id": f"candidate:{i}", "key": f"candidate:{i}"})
    base = [gpu_fact(ctx.hw, ctx.run.params), model_fact(ctx.arch, ctx.quant, ctx.dtype),
            request_fact(req, ctx.version, ctx.model_max_len)]
    sizing = ctx.run.run_stage("sizing", base + facts)
    rows = []
    for i, (c, length, s, quant, wbytes) in enumerate(grid):
        m = c.memory
        perf = _perf(ctx, c.layout, m, s, wbytes) if m.weights_fit else None
        rows.append({
            "tensor_parallel_size": c.layout.tp, "pipeline_parallel_size": c.layout.pp,
            "data_parallel_size": c.layout.dp, "gpus": c.layout.gpus, "quantization": quant,
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
    rows.sort(key=lambda r: objective(req.mode, r))
    return rows
