"""The capacity answer: options sized for the load, their cost, the Pareto frontier, and the packs' choice.

Which option is best is policy: every option becomes an `option` fact; the sizing stage may forbid or prefer
options (a site's owned GPU types, a cap on GPUs per replica), and the recommend stage's rules choose one as the
decision `capacity_option` (by default the cheapest meeting the SLOs, else the fewest GPUs meeting them), with
the audit trail a plan has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner import __version__
from planner.capacity.search import SLO_ORDER, Load, Shape, Sized, option_config, shapes_for_gpu, size, verify
from planner.errors import InputError
from planner.hardware.catalog import GpuSpec
from planner.models.arch import ModelArch
from planner.plan.assemble import launch_for
from planner.policy import PolicyRun
from planner.policy.facts import normalise_fact
from planner.policy.loader import PackSet
from planner.policy.resolver import resolve
from planner.schemas import PlanRequest

PRICE_PARAM = "gpu_hourly_price_usd"


@dataclass
class Option:
    shape: Shape
    sized: Sized
    price: float | None  # USD per GPU-hour

    @property
    def key(self) -> str:
        return self.shape.key

    @property
    def total_gpus(self) -> int:
        return self.sized.replicas * self.shape.layout.gpus

    @property
    def cost_per_hour(self) -> float | None:
        return None if self.price is None else self.price * self.total_gpus

    def cost_per_million_tokens(self, load: Load) -> float | None:
        tokens_per_hour = load.rate * load.output_len * 3600
        return None if self.cost_per_hour is None else self.cost_per_hour / tokens_per_hour * 1e6

    def tokens_per_s_per_gpu(self, load: Load) -> float:
        return load.rate * load.output_len / self.total_gpus

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1000.0 / self.sized.expected.itl_mean_ms


def check_prices(packset: PackSet, catalog_ids: set[str]) -> dict[str, float]:
    """The price map, every id a catalog GPU (a typo would silently leave a GPU unpriced)."""
    from planner.suggest import closest, did_you_mean

    param = packset.params.get(PRICE_PARAM)
    prices = dict(param.value) if param is not None else {}
    for gid in prices:
        if gid not in catalog_ids:
            hint = did_you_mean(closest(gid, [(c, c, c) for c in sorted(catalog_ids)]))
            raise InputError(f"{PRICE_PARAM} (set by pack {param.set_by if param else '?'}): unknown GPU id "
                             f"{gid!r}{hint}; keys are catalog ids as `vllm-planner gpus` lists them")
    return prices


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """True for points no other point dominates (at least as good on both axes, better on one)."""
    out = []
    for i, (x, y) in enumerate(points):
        dominated = any((a >= x and b >= y and (a > x or b > y)) for j, (a, b) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def option_fact(o: Option, load: Load, pareto: bool, flags: dict[str, Any]) -> dict[str, Any]:
    s, lay, spec = o.shape, o.shape.layout, o.shape.ctx.hw.spec
    cost, per_m = o.cost_per_hour, o.cost_per_million_tokens(load)
    return normalise_fact("option", o.key, {
        "catalog_id": spec.id if spec else "unknown", "gpu_name": s.ctx.hw.name,
        "vendor": spec.vendor if spec else "unknown", "family": spec.family if spec else "unknown",
        "gpus_per_replica": lay.gpus, "replicas": o.sized.replicas, "total_gpus": o.total_gpus,
        "nodes_per_replica": s.nodes, "tensor_parallel_size": lay.tp, "pipeline_parallel_size": lay.pp,
        "data_parallel_size": lay.dp, "enable_expert_parallel": lay.ep, "kv_cache_dtype": s.kv_cache_dtype,
        "quantization": s.ctx.quant or "none", "meets_slo": o.sized.meets_slo,
        "max_rate": round(s.sat.max_rate, 4), "utilization": round(o.sized.expected.utilization, 4),
        "ttft_ms": round(min(o.sized.ttft_ms[1], 1e12), 3), "itl_ms": round(o.sized.itl_ms[1], 4),
        "output_tokens_per_s_per_gpu": round(o.tokens_per_s_per_gpu(load), 3),
        "tokens_per_s_per_user": round(o.tokens_per_s_per_user, 3), "pareto": pareto,
        "priced": cost is not None, "cost_per_hour": None if cost is None else round(cost, 4),
        "cost_per_million_output_tokens": None if per_m is None else round(per_m, 6), **flags,
    })


def _ranking_flags(options: list[Option], forbidden: set[str], prefs: dict[str, float], params: dict[str, Any]
                   ) -> dict[str, dict[str, Any]]:
    """Which allowed option meeting the SLOs is cheapest, uses the fewest GPUs, or the site prefers."""
    meeting = [o for o in options if o.key not in forbidden and o.sized.meets_slo == "yes"]

    def tie(o: Option) -> tuple[Any, ...]:  # fewer GPUs, then the model's own KV dtype, then speed
        return (o.total_gpus, o.shape.kv_cache_dtype != "auto", o.sized.itl_ms[1], o.sized.ttft_ms[1], o.key)

    priced = [o for o in meeting if o.cost_per_hour is not None]
    cheapest = min(priced, key=lambda o: (round(o.cost_per_hour or 0.0, 6), *tie(o)), default=None)
    fewest = min(meeting, key=tie, default=None)
    decide = float(params["preference_decides_option"])
    scored = [o for o in meeting if prefs.get(o.key, 0.0) >= decide]
    preferred = min(scored, key=lambda o: (-prefs[o.key], round(o.cost_per_hour or 0.0, 6), *tie(o)), default=None)
    return {o.key: {"forbidden": o.key in forbidden, "preference": prefs.get(o.key, 0.0),
                    "is_cheapest_meeting_slo": o is cheapest, "is_fewest_gpus_meeting_slo": o is fewest,
                    "is_preferred_meeting_slo": o is preferred} for o in options}


def choose(packset: PackSet, options: list[Option], load: Load, pareto: list[bool]
           ) -> tuple[str | None, dict[str, Any], PolicyRun, set[str]]:
    """Run the packs over the options: sizing (forbid/prefer), then recommend `capacity_option`."""
    run = PolicyRun(packset)
    params = run.params
    none = {o.key: {"forbidden": False, "preference": 0.0, "is_cheapest_meeting_slo": False,
                    "is_fewest_gpus_meeting_slo": False, "is_preferred_meeting_slo": False} for o in options}
    facts = [option_fact(o, load, pareto[i], none[o.key]) for i, o in enumerate(options)]
    sizing = run.run_stage("sizing", facts)
    forbidden = {k.removeprefix("option:") for k in sizing.forbidden}
    prefs = {k.removeprefix("option:"): float(sum(float(p["score"]) for p in v))
             for k, v in sizing.preferences.items()}
    flags = _ranking_flags(options, forbidden, prefs, params)
    facts = [option_fact(o, load, pareto[i], flags[o.key]) for i, o in enumerate(options)]
    rec = run.run_stage("recommend", facts)
    decisions = resolve([p for p in rec.proposals if p.key == "capacity_option"], {})
    chosen = decisions.get("capacity_option")
    key = str(chosen.value).removeprefix("option:") if chosen is not None else None
    if key is not None and (key in forbidden or key not in {o.key for o in options}):
        raise InputError(f"rule {chosen.by if chosen else '?'} recommends capacity_option {key!r}, which is not an "
                         "allowed option")
    return key, {k: d.to_json() for k, d in decisions.items()}, run, forbidden


def option_json(o: Option, load: Load, pareto: bool) -> dict[str, Any]:
    from planner.artifacts.serve import serve_args, serve_command

    s, ctx = o.shape, o.shape.ctx
    config = option_config(s)
    launch = launch_for(ctx, config, True)
    cmd = serve_command(ctx.arch.name, serve_args(config, ctx.run.params, pinned=ctx.req.pinned, launch=launch,
                                                  version=ctx.version), visible_devices=None)
    exp, m = o.sized.expected, s.memory
    cost, per_m = o.cost_per_hour, o.cost_per_million_tokens(load)

    def rng(v: tuple[float, float, float]) -> dict[str, float]:
        return {"low": round(v[0], 3), "expected": round(v[1], 3), "high": round(v[2], 3)}

    return {
        "key": o.key, "gpu": ctx.hw.name, "catalog_id": ctx.hw.spec.id if ctx.hw.spec else None,
        "gpus_per_replica": s.layout.gpus, "replicas": o.sized.replicas, "total_gpus": o.total_gpus,
        "nodes_per_replica": s.nodes, "config": config, "serve_command": cmd,
        "launch": {"nodes": launch.nodes, "multi_node": launch.multi_node, "gpus_per_pod": launch.gpus_per_pod},
        "per_replica": {"rate": round(exp.rate, 4), "max_rate": round(s.sat.max_rate, 4),
                        # the calibrated spread of measured/predicted saturated throughput (perf_range_tput_*)
                        "max_rate_range": {
                            "low": round(s.sat.max_rate * float(ctx.run.params["perf_range_tput_low"]), 4),
                            "expected": round(s.sat.max_rate, 4),
                            "high": round(s.sat.max_rate * float(ctx.run.params["perf_range_tput_high"]), 4)},
                        "concurrency": round(exp.concurrency, 2), "utilization": round(exp.utilization, 4)},
        "ttft_ms": rng(o.sized.ttft_ms), "itl_ms": rng(o.sized.itl_ms), "meets_slo": o.sized.meets_slo,
        "cost_per_hour": None if cost is None else round(cost, 4),
        "cost_per_million_output_tokens": None if per_m is None else round(per_m, 4),
        "pareto": pareto, "output_tokens_per_s_per_gpu": round(o.tokens_per_s_per_gpu(load), 2),
        "tokens_per_s_per_user": round(o.tokens_per_s_per_user, 2), "itl_mean_ms": round(exp.itl_mean_ms, 3),
        "limited_by": s.sat.limited_by, "running_cap": s.sat.running_cap, "method": o.sized.method,
        "memory": {k: getattr(m, k) for k in ("total_bytes", "budget_bytes", "weights_bytes", "activation_peak_bytes",
                                               "non_torch_bytes", "cuda_graph_bytes", "kv_cache_bytes")},
        "kv_cache_tokens": m.kv_cache_tokens, "notes": list(exp.notes),
    }


def shortfall(o: Option, load: Load) -> float:
    """How far the option's expected latencies are above the SLOs (1.0 = exactly at them): the closest option
    when none meets them is the one with the smallest shortfall."""
    ratios = [o.sized.ttft_ms[1] / load.slo_ttft_ms if load.slo_ttft_ms else 0.0,
              o.sized.itl_ms[1] / load.slo_itl_ms if load.slo_itl_ms else 0.0]
    return round(max(ratios), 6)


def rank_key(o: Option, best: str | None, load: Load) -> tuple[Any, ...]:
    """Display order: the chosen option, then by SLO status; options missing the SLOs by how far they miss; then
    cost (unpriced last), GPUs, the model's own KV dtype, ITL."""
    cost = o.cost_per_hour
    miss = shortfall(o, load) if o.sized.meets_slo != "yes" else 0.0
    return (o.key != best, SLO_ORDER[o.sized.meets_slo], miss, cost is None, cost or 0.0, o.total_gpus,
            o.shape.kv_cache_dtype != "auto", o.sized.itl_ms[1], o.key)


def request_json(template: PlanRequest, load: Load) -> dict[str, Any]:
    return {"model": template.model, "rate": load.rate, "input_len": load.input_len, "output_len": load.output_len,
            "slo": {"ttft_ms": load.slo_ttft_ms, "itl_ms": load.slo_itl_ms, "percentile": load.percentile}}


def _verify_finalists(packset: PackSet, options: list[Option], load: Load, best: str | None,
                      decisions: dict[str, Any], run: PolicyRun | None, forbidden: set[str]
                      ) -> tuple[str | None, dict[str, Any], PolicyRun | None, set[str]]:
    """Analytic to prune, simulation for the finalists: the best-ranked options are re-sized by replaying vLLM's
    scheduler; when that changes them the packs choose again (a new leader is checked too, a few rounds)."""
    k = int(packset.param_values()["capacity_simulated_finalists"])
    checked: set[str] = set()
    for _ in range(3):
        allowed = sorted((o for o in options if o.key not in forbidden), key=lambda o: rank_key(o, best, load))
        todo = [o for o in allowed[:k] if o.key not in checked]
        if not todo:
            break
        changed = False
        for o in todo:
            checked.add(o.key)
            new = verify(o.shape, load, o.sized)
            changed |= (new.replicas, new.meets_slo) != (o.sized.replicas, o.sized.meets_slo)
            o.sized = new
        if not changed:
            break
        pareto = pareto_flags([(o.tokens_per_s_per_gpu(load), o.tokens_per_s_per_user) for o in options])
        best, decisions, run, forbidden = choose(packset, options, load, pareto)
    return best, decisions, run, forbidden


def build(template: PlanRequest, load: Load, gpus: list[GpuSpec], packset: PackSet, arch: ModelArch,
          max_gpus: int, catalog_ids: set[str]) -> dict[str, Any]:
    """The whole capacity answer as the contract's JSON object (plus `closest`, `searched`, `notes`)."""
    prices = check_prices(packset, catalog_ids)
    shapes: list[Shape] = []
    skipped: list[dict[str, str]] = []
    notes: list[str] = []
    errors: list[InputError] = []
    for gpu in gpus:
        try:
            found, why = shapes_for_gpu(template, gpu, packset, arch, load, max_gpus)
        except InputError as e:
            errors.append(e)
            skipped.append({"gpu": gpu.id, "reason": str(e)})
            continue
        shapes.extend(found)
        if not found:
            skipped.append({"gpu": gpu.id, "reason": "; ".join(why[:1]) or "no replica shape"})
        elif why:
            notes.extend(f"{gpu.id}: {w}" for w in why[:3])
    if errors and len(errors) == len(gpus):
        raise errors[0]
    options = [Option(shape=s, sized=size(s, load), price=prices.get(s.ctx.hw.spec.id) if s.ctx.hw.spec else None)
               for s in shapes]
    pareto = pareto_flags([(o.tokens_per_s_per_gpu(load), o.tokens_per_s_per_user) for o in options])
    best, decisions, run, forbidden = choose(packset, options, load, pareto) if options else (None, {}, None, set())
    best, decisions, run, forbidden = _verify_finalists(packset, options, load, best, decisions, run, forbidden)
    allowed = [o for o in options if o.key not in forbidden]
    frontier = pareto_flags([(o.tokens_per_s_per_gpu(load), o.tokens_per_s_per_user) for o in allowed])
    is_pareto = {o.key: p for o, p in zip(allowed, frontier, strict=True)}  # among the options the packs allow
    ranked = sorted(allowed, key=lambda o: rank_key(o, best, load))
    warnings: list[dict[str, Any]] = []
    if not any(o.sized.meets_slo == "yes" for o in allowed):
        closest = ranked[0] if ranked else None
        warnings.append({"code": "W-CAPACITY-SLO", "rule": None, "message": (
            "no option meets the SLOs" + (f"; closest: {closest.sized.replicas} x {closest.shape.layout.gpus} "
                                          f"{closest.shape.ctx.hw.name} ({closest.shape.layout.label}), "
                                          f"{closest.sized.meets_slo}" if closest else ""))})
    unpriced = sorted({o.shape.ctx.hw.spec.id for o in allowed if o.price is None and o.shape.ctx.hw.spec})
    if unpriced:
        warnings.append({"code": "W-CAPACITY-UNPRICED", "rule": None, "message": (
            f"no pack prices {', '.join(unpriced[:6])}{' ...' if len(unpriced) > 6 else ''}: set "
            f"{PRICE_PARAM} in a site pack (examples/site/prices.yaml) to rank by cost; unpriced options rank by GPU "
            "count")})
    if run is not None:
        warnings.extend(w for w in run.stages["recommend"].warnings)
        warnings.extend(w for w in run.stages["sizing"].warnings)
    dropped = [{"key": o.key, "reasons": []} for o in options if o.key in forbidden]
    if run is not None:
        for d in dropped:
            d["reasons"] = [f"{f['rule']}: {f['reason']}" for f in run.stages["sizing"].forbidden.get(
                f"option:{d['key']}", [])]
    audit = run.audit() if run is not None else {"packs": [], "firings": []}
    return {
        "planner_version": __version__, "vllm_version": shapes[0].ctx.version if shapes else None,
        "request": request_json(template, load),
        "options": [option_json(o, load, is_pareto[o.key]) for o in ranked],
        "best": 0 if best is not None and ranked and ranked[0].key == best else None,
        "decisions": decisions, "audit": audit, "warnings": warnings,
        "dropped": dropped, "searched": {"gpus": [g.id for g in gpus], "skipped": skipped}, "notes": notes,
    }
