"""The staged settle loop: enumerate candidates with the current settings, run the sizing stage (forbid,
prefer) and the recommend stage, resolve decisions; repeat until the decided settings stop changing (they
depend on candidates only through the layout and KV dtype, so this converges in two or three passes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.errors import InputError
from planner.memory import KV_DTYPES, MemoryResult
from planner.plan.context import PlanContext, Settings, baseline_scales, initial_settings, memory_for
from planner.plan.layouts import Layout, launchable, layouts, pp_is_valid, tp_is_valid
from planner.policy.facts import normalise_fact
from planner.policy.resolver import Decision, resolve
from planner.schemas import PlanRequest
from planner.units import GiB

MAX_SETTLE_PASSES = 4


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


def kv_options(pinned: str | None, gpu_fp8: bool) -> list[str]:
    if pinned:
        if pinned not in KV_DTYPES:
            raise InputError(f"--kv-cache-dtype: unknown value {pinned!r} (expected {', '.join(KV_DTYPES)})")
        return [pinned]
    return ["auto", "fp8"] if gpu_fp8 else ["auto"]


def kv_pressure(req: PlanRequest, mem: MemoryResult, dp: int) -> float:
    want = req.concurrency * (req.input_len + req.output_len)
    have = max(1, mem.kv_cache_tokens * dp)
    return want / have


def candidate_fact(c: Candidate, req: PlanRequest, quant: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    m = c.memory
    return normalise_fact("candidate", c.key, {
        "tensor_parallel_size": c.layout.tp, "pipeline_parallel_size": c.layout.pp,
        "data_parallel_size": c.layout.dp, "gpus_used": c.layout.gpus,
        "quantization": quant or "none", "kv_cache_dtype": c.kv_cache_dtype, "fits": m.fits,
        "weights_fit": m.weights_fit,
        "kv_pressure": round(kv_pressure(req, m, c.layout.dp), 6),
        "weights_fraction": round(m.weights_bytes / m.budget_bytes, 6) if m.budget_bytes else 1.0,
        "kv_cache_gib": round(m.kv_cache_bytes / GiB, 4), "kv_cache_tokens": m.kv_cache_tokens,
        "max_concurrency": round(m.max_concurrency, 4), "max_fitting_model_len": m.max_fitting_model_len, **flags,
    })


def ranking_flags(cands: list[Candidate], settings: Settings) -> dict[str, dict[str, bool]]:
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


def pinned_decisions(req: PlanRequest, quant: str | None) -> dict[str, Any]:
    pin = req.pinned
    out = {k: getattr(pin, k) for k in ("tensor_parallel_size", "pipeline_parallel_size", "kv_cache_dtype",
                                         "gpu_memory_utilization", "max_model_len", "max_num_seqs",
                                         "max_num_batched_tokens", "enforce_eager") if getattr(pin, k) is not None}
    if pin.quantization:
        out["quantization"] = quant
    return out


def check_decisions(decisions: dict[str, Decision]) -> None:
    """A rule's value that vLLM would reject (from a ref or a param set at run time) is a pack error."""
    from planner.errors import PackError
    from planner.policy.schema import check_decision_value

    for key, d in decisions.items():
        if d.by == "user":
            continue
        problem = check_decision_value(key, d.value)
        if problem:
            raise PackError(f"rule {d.by} recommends {key} = {d.value!r}: {problem}")


def settings_from(decisions: dict[str, Decision], prev: Settings, cands: list[Candidate]) -> Settings:
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


def settle(ctx: PlanContext, base_facts: list[dict[str, Any]]
            ) -> tuple[dict[str, Decision], list[Candidate], Settings]:
    req, arch, hw = ctx.req, ctx.arch, ctx.hw
    lays = launchable(ctx, layouts(arch, total_gpus=hw.count, gpus_per_node=hw.gpus_per_node, nodes=hw.nodes,
                                    tp=req.pinned.tensor_parallel_size, pp=req.pinned.pipeline_parallel_size))
    if not lays:
        pin_tp, pin_pp = req.pinned.tensor_parallel_size, req.pinned.pipeline_parallel_size
        reason = (tp_is_valid(arch, pin_tp) if pin_tp else None) or (pp_is_valid(arch, pin_pp) if pin_pp else None)
        if pin_tp and (pin_tp * (pin_pp or 1) > hw.count):
            reason = f"--tp {pin_tp} x --pp {pin_pp or 1} needs more than the {hw.count} GPU(s) planned for"
        raise InputError(f"no parallel layout vLLM can run: {reason or 'tensor parallel does not divide the heads'}")
    kv_opts = kv_options(req.pinned.kv_cache_dtype, bool(hw.spec and hw.spec.fp8_supported))
    scales = baseline_scales(ctx)
    pinned = pinned_decisions(req, ctx.quant)
    settings = initial_settings(ctx)
    decisions: dict[str, Decision] = {}
    cands: list[Candidate] = []
    for _ in range(MAX_SETTLE_PASSES):
        cands = [Candidate(layout=lay, kv_cache_dtype=kv, forbidden=[],
                           memory=memory_for(ctx, lay, kv, settings, ctx.target_len, scales))
                 for lay in lays for kv in kv_opts]
        flags = ranking_flags(cands, settings)
        facts = [candidate_fact(c, req, ctx.quant, flags[c.key]) for c in cands]
        sizing = ctx.run.run_stage("sizing", base_facts + facts)
        for c in cands:
            c.forbidden = sizing.forbidden.get(f"candidate:{c.key}", [])
            c.preferred_by = sizing.preferences.get(f"candidate:{c.key}", [])
        flags = ranking_flags(cands, settings)
        facts = [candidate_fact(c, req, ctx.quant, flags[c.key]) for c in cands]
        rec = ctx.run.run_stage("recommend", base_facts + facts)
        decisions = resolve(rec.proposals, pinned)
        check_decisions(decisions)
        new = settings_from(decisions, settings, cands)
        if new == settings:
            break
        settings = new
    return decisions, cands, settings
