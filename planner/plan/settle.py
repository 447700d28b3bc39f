"""The staged settle loop: enumerate candidates with the current settings, run the sizing stage (forbid,
prefer) and the recommend stage, resolve decisions; repeat until the decided settings stop changing (they
depend on candidates only through the layout and KV dtype, so this converges in two or three passes)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from planner.errors import InputError
from planner.hardware.select import sick_list
from planner.memory import KV_DTYPES, MemoryResult
from planner.plan.context import PlanContext, Settings, baseline_scales, initial_settings, memory_for, useful_floor
from planner.plan.gate import launch_fields
from planner.plan.layouts import Layout, launchable, layouts, pp_is_valid, tp_is_valid
from planner.plan.speed import perf_for
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
    launch: dict[str, Any] = field(default_factory=dict)  # plan/gate.launch_fields

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
        "max_concurrency": round(m.max_concurrency, 4), "max_fitting_model_len": m.max_fitting_model_len,
        **c.launch, **flags,
    })


def context_len(c: Candidate, target_len: int) -> int:
    """The max_model_len a candidate would serve: the full length when one sequence fits, else what its KV holds."""
    return target_len if c.memory.fits else (c.memory.max_fitting_model_len if c.memory.weights_fit else 0)


def busy_gpus(layout: Layout, concurrency: int, is_moe: bool) -> int:
    """GPUs doing work at this concurrency: idle data-parallel replicas of a dense model do not count; the ranks
    of one MoE engine all step together (idle ranks run dummy batches), so they all count."""
    replicas = layout.dp if is_moe and layout.dp > 1 else min(layout.dp, concurrency)
    return layout.tp * layout.pp * replicas


def mode_metric(mode: str, itl_ms: float | None, tokens_per_s: float | None, per_gpu: float | None) -> float:
    """The mode's objective as one number, smaller is better: latency the lowest ITL, throughput the most output
    tokens/s, balanced the most output tokens/s per busy GPU. Unknown speeds rank last."""
    if itl_ms is None or tokens_per_s is None or per_gpu is None:
        return float("inf")
    if mode == "latency":
        return itl_ms
    return -(tokens_per_s if mode == "throughput" else per_gpu)


def _speed_fields(ctx: PlanContext, c: Candidate, settings: Settings) -> dict[str, float]:
    if not c.memory.weights_fit:
        return {}
    perf = perf_for(ctx, c.layout, c.memory, replace(settings, layout=c.layout, kv_cache_dtype=c.kv_cache_dtype))
    if perf is None:
        return {}
    busy = busy_gpus(c.layout, ctx.req.concurrency, ctx.arch.is_moe)
    return {"itl_ms": round(perf.itl_ms, 4), "output_tokens_per_s": round(perf.output_tokens_per_s_total, 3),
            "tokens_per_s_per_gpu": round(perf.output_tokens_per_s_total / busy, 3)}


def _pick_best(ctx: PlanContext, pool: list[Candidate], speeds: dict[str, dict[str, float]], useful: set[str]
               ) -> Candidate | None:
    """The mode's choice: full-length fits first, then a clamped but useful context, then any whose weights fit;
    within that tier the best objective; candidates within the pack's layout_tie_tolerance of it are decided by
    the sizing stage's `prefer` scores, then fewer GPUs, then fewer pipeline stages."""
    fitting = [c for c in pool if c.memory.weights_fit]
    tier = ([c for c in fitting if c.memory.fits] or [c for c in fitting if c.key in useful]
            or sorted(fitting, key=lambda c: -c.memory.max_fitting_model_len)[:1])
    if not tier:
        return None

    def metric(c: Candidate) -> float:
        sp = speeds.get(c.key, {})
        return mode_metric(ctx.req.mode, sp.get("itl_ms"), sp.get("output_tokens_per_s"),
                           sp.get("tokens_per_s_per_gpu"))

    best = min(metric(c) for c in tier)
    tol = float(ctx.run.params["layout_tie_tolerance"])
    near = [c for c in tier if best == float("inf") or metric(c) <= best + abs(best) * tol]
    return min(near, key=lambda c: (-c.preference, c.layout.gpus, c.layout.pp, metric(c), c.layout.key))


def candidate_speeds(ctx: PlanContext, cands: list[Candidate], settings: Settings) -> dict[str, dict[str, float]]:
    """Each candidate's speed at the request's workload (computed once per settle pass)."""
    return {c.key: _speed_fields(ctx, c, settings) for c in cands}


def ranking_flags(ctx: PlanContext, cands: list[Candidate], settings: Settings, speeds: dict[str, dict[str, float]]
                  ) -> dict[str, dict[str, Any]]:
    """Ranking features the rules match on: each candidate's speed, whether its context is useful, which one the
    mode's objective picks, and (nothing fits) which layout comes closest."""
    base = [c for c in cands if c.kv_cache_dtype == "auto" or len({x.kv_cache_dtype for x in cands}) == 1]
    allowed = [c for c in base if not c.forbidden]
    floor = useful_floor(ctx)
    useful = {c.key for c in cands if context_len(c, ctx.target_len) >= floor}
    best = _pick_best(ctx, allowed, speeds, useful)
    order = sorted(allowed, key=lambda c: (c.layout.tp * c.layout.pp, c.layout.pp, c.layout.tp))
    min_fit = next((c for c in order if c.memory.fits), None)
    min_wfit = next((c for c in order if c.memory.weights_fit), None) if min_fit is None else None
    single = [c for c in allowed if c.layout.pp == 1]
    max_tp = max(single, key=lambda c: c.layout.tp, default=None)
    nothing_fits = not any(x.memory.weights_fit for x in allowed)
    need = {c.key: c.memory.weights_bytes + c.memory.activation_peak_bytes + c.memory.non_torch_bytes for c in base}
    # When every layout is dropped (weights too large), the closest is the one the fewest sizing rules object to
    # (gates and layout policy still count), then the smallest per-GPU need: one replica over the GPUs.
    closest = min(allowed or base, key=lambda c: (len(c.forbidden), need[c.key], c.layout.gpus, c.layout.dp,
                                                  c.layout.pp), default=None)
    decide = float(ctx.run.params["preference_decides_layout"])
    scored = [c for c in allowed if c.memory.fits and c.preference >= decide]
    preferred = min(scored, key=lambda c: (-c.preference, c.layout.tp * c.layout.pp, c.layout.pp), default=None)
    out = {}
    for c in cands:
        sel_layout = settings.layout is not None and c.layout == settings.layout
        out[c.key] = {
            "is_min_fitting_tp": c is min_fit, "is_min_weights_fit_tp": c is min_wfit, "is_max_tp": c is max_tp,
            "is_min_tp": c is closest and nothing_fits, "is_closest": c is closest and nothing_fits,
            "is_baseline_kv": c in base, "is_selected_layout": sel_layout,
            "is_selected": sel_layout and c.kv_cache_dtype == settings.kv_cache_dtype,
            "is_preferred": c is preferred, "preference": c.preference, "forbidden": bool(c.forbidden),
            "context_len": context_len(c, ctx.target_len), "useful_context": c.key in useful,
            "is_best_for_mode": c is best and not nothing_fits, **speeds[c.key],
        }
    return out


def pinned_decisions(req: PlanRequest, quant: str | None) -> dict[str, Any]:
    pin = req.pinned
    keys = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "enable_expert_parallel",
            "kv_cache_dtype", "gpu_memory_utilization", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
            "enforce_eager")
    out = {k: getattr(pin, k) for k in keys if getattr(pin, k) is not None}
    if pin.quantization:
        out["quantization"] = quant
    return out


def check_decisions(decisions: dict[str, Decision]) -> None:
    """A rule's value that vLLM would reject (from a ref or a param set at run time) is a pack error, and so is
    a quantization method vLLM does not know (schema.QUANTIZATION_METHODS)."""
    from planner.errors import PackError
    from planner.policy.schema import check_decision_value

    for key, d in decisions.items():
        if d.by == "user":
            continue
        problem = check_decision_value(key, d.value)
        if problem:
            raise PackError(f"rule {d.by} recommends {key} = {d.value!r}: {problem}")


_LAYOUT_KEYS = {"tensor_parallel_size": "tp", "pipeline_parallel_size": "pp", "data_parallel_size": "dp",
                "enable_expert_parallel": "ep"}


def _no_layout(decided: dict[str, Decision], cands: list[Candidate]) -> Exception:
    """The pack error for layout decisions no candidate has: the rule whose value no launchable layout has,
    or else the rules whose values do not combine."""
    from planner.errors import PackError

    def have(key: str) -> list[Any]:
        return sorted({getattr(c.layout, _LAYOUT_KEYS[key]) for c in cands}, key=repr)

    for key, d in decided.items():
        if d.by != "user" and d.value not in have(key):
            shown = ", ".join(map(str, have(key))) or "none"
            return PackError(f"rule {d.by} recommends {key} = {d.value!r}, but no layout vLLM can launch here has it "
                             f"(the candidates have {key} {shown}); recommend a candidate's value "
                             f"({{ref: cand.{key}}}) so the plan runs what the rule says")
    rules = sorted({d.by for d in decided.values() if d.by != "user"})
    combo = ", ".join(f"{k} = {d.value!r} ({d.by})" for k, d in decided.items())
    return PackError(f"rule{'s' if len(rules) > 1 else ''} {', '.join(rules)} decide{'' if len(rules) > 1 else 's'} "
                     f"a layout no candidate has ({combo}); recommend all four layout keys from one candidate "
                     "({ref: cand.KEY})")


def settings_from(decisions: dict[str, Decision], prev: Settings, cands: list[Candidate]) -> Settings:
    """The settings the decisions ask for. A layout decision (TP, PP, DP, EP) must name a candidate: the
    plan runs one of the candidates, so a value none has (a rule's TP 1000 on 8 GPUs) would be recorded as
    the decision while the plan ran something else. That is a PackError naming the rule, never silent."""
    def val(key: str, default: Any) -> Any:
        return decisions[key].value if key in decisions and decisions[key].value is not None else default

    layout = prev.layout
    if "tensor_parallel_size" in decisions:
        want = {"tp": int(val("tensor_parallel_size", 1)), "pp": int(val("pipeline_parallel_size", 1)),
                "dp": val("data_parallel_size", None), "ep": val("enable_expert_parallel", None)}
        match = next((c.layout for c in cands if all(v is None or getattr(c.layout, k) == v
                                                     for k, v in want.items())), None)
        if match is None and cands:
            raise _no_layout({k: decisions[k] for k in _LAYOUT_KEYS if k in decisions}, cands)
        layout = match or layout
    return Settings(util=float(val("gpu_memory_utilization", prev.util)),
                    max_num_seqs=int(val("max_num_seqs", prev.max_num_seqs)),
                    max_num_batched_tokens=int(val("max_num_batched_tokens", prev.max_num_batched_tokens)),
                    block_size=int(val("block_size", prev.block_size)),
                    enforce_eager=bool(val("enforce_eager", prev.enforce_eager)),
                    kv_cache_dtype=str(val("kv_cache_dtype", prev.kv_cache_dtype)), layout=layout)


def launch_facts(ctx: PlanContext, lay: Layout) -> dict[str, Any]:
    """plan/gate.launch_fields for a layout; a pinned PP is the user's choice, never replaceable by TP."""
    out = launch_fields(ctx.arch, lay, ctx.hw.gpus_per_node)
    if ctx.req.pinned.pipeline_parallel_size:
        out["pp_replaceable_by_tp"] = False
    return out


def pinned_layouts(ctx: PlanContext) -> list[Layout]:
    """The layouts the cluster allows, restricted to the pinned TP/PP/DP/EP."""
    pin, hw = ctx.req.pinned, ctx.hw
    return layouts(ctx.arch, total_gpus=hw.count, gpus_per_node=hw.gpus_per_node, nodes=hw.nodes,
                   tp=pin.tensor_parallel_size, pp=pin.pipeline_parallel_size,
                   dp=pin.data_parallel_size, ep=pin.enable_expert_parallel or None)


def settle(ctx: PlanContext, base_facts: list[dict[str, Any]]
            ) -> tuple[dict[str, Decision], list[Candidate], Settings]:
    req, arch, hw = ctx.req, ctx.arch, ctx.hw
    lays = launchable(ctx, pinned_layouts(ctx))
    if not lays:
        pin_tp, pin_pp = req.pinned.tensor_parallel_size, req.pinned.pipeline_parallel_size
        pin_dp = req.pinned.data_parallel_size
        reason = (tp_is_valid(arch, pin_tp) if pin_tp else None) or (pp_is_valid(arch, pin_pp) if pin_pp else None)
        # Too few GPUs explains a pinned TP best; for PP/DP a model-shape reason (more stages than layers) wins.
        needed = (pin_tp or 1) * (pin_pp or 1) * (pin_dp or 1)
        if needed > hw.count and (pin_tp or reason is None):
            reason = (f"--tp {pin_tp or 1} x --pp {pin_pp or 1} x --dp {pin_dp or 1} needs more than "
                      f"the {hw.count} GPU(s) planned for")
            sick = [d for d in (hw.selection.all_devices if hw.selection else ()) if d.left_out]
            if sick:
                reason += f" (left out: {sick_list(sick)})"
        raise InputError(f"no parallel layout vLLM can run: {reason or 'tensor parallel does not divide the heads'}")
    kv_opts = kv_options(req.pinned.kv_cache_dtype, bool(hw.spec and hw.spec.fp8_supported))
    scales = baseline_scales(ctx)
    pinned = pinned_decisions(req, ctx.quant)
    settings = initial_settings(ctx)
    decisions: dict[str, Decision] = {}
    cands: list[Candidate] = []
    for _ in range(MAX_SETTLE_PASSES):
        cands = [Candidate(layout=lay, kv_cache_dtype=kv, forbidden=[],
                           launch=launch_facts(ctx, lay),
                           memory=memory_for(ctx, lay, kv, settings, ctx.target_len, scales))
                 for lay in lays for kv in kv_opts]
        speeds = candidate_speeds(ctx, cands, settings)
        flags = ranking_flags(ctx, cands, settings, speeds)
        facts = [candidate_fact(c, req, ctx.quant, flags[c.key]) for c in cands]
        sizing = ctx.run.run_stage("sizing", base_facts + facts)
        for c in cands:
            c.forbidden = sizing.forbidden.get(f"candidate:{c.key}", [])
            c.preferred_by = sizing.preferences.get(f"candidate:{c.key}", [])
        flags = ranking_flags(ctx, cands, settings, speeds)
        facts = [candidate_fact(c, req, ctx.quant, flags[c.key]) for c in cands]
        rec = ctx.run.run_stage("recommend", base_facts + facts)
        decisions = resolve(rec.proposals, pinned)
        check_decisions(decisions)
        new = settings_from(decisions, settings, cands)
        if new == settings:
            break
        settings = new
    return decisions, cands, settings
