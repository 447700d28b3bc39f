"""Use cases: plan, generate, sweep, detect. The only place that wires I/O (model sources, probe, packs) to the
pure core; each step of a plan lives in planner/plan/ (see its __init__ for the order).

plan():
  1. load packs, model and hardware; facts gpu/model/cluster/request -> baseline stage (plan/context);
  2. settle: candidates (plan/layouts, plan/gate) -> sizing -> recommend -> decisions (plan/settle);
  3. account memory and speed for the decided configuration; verdict, alternatives, fixes (plan/assemble).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from planner import __version__
from planner.errors import InputError
from planner.machine import Hardware, detect, probed_hardware, resolve_hardware  # noqa: F401 - re-exported
from planner.models.arch import ModelArch
from planner.plan.assemble import assemble
from planner.plan.context import (  # noqa: F401 - re-exported
    KNOWN_VLLM_VERSIONS,
    ONLINE_QUANTIZATIONS,
    PlanContext,
    cluster_fact,
    gpu_fact,
    model_fact,
    plan_context,
    request_fact,
)
from planner.plan.settle import settle
from planner.plan.speed import plan_perf_inputs  # noqa: F401 - re-exported
from planner.plan.sweep import sweep  # noqa: F401 - re-exported
from planner.policy.loader import PackSet, load_packset
from planner.schemas import PlanRequest, PlanResponse
from planner.units import GiB


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
                  request_fact(req, ctx.version, ctx.model_max_len), cluster_fact(ctx.hw)]
    decisions, cands, settings = settle(ctx, base_facts)
    return assemble(ctx, decisions, cands, settings, stages), ctx


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


def capacity(template: PlanRequest, load: Any, gpus: list[str], *, max_gpus_per_replica: int | None = None,
             packset: PackSet | None = None) -> dict[str, Any]:
    """What to deploy for a load within SLOs, across GPU types (planner/capacity). `template` carries the model,
    pins, vLLM version and rule packs; `gpus` names GPU types (empty: every catalog GPU)."""
    from planner.capacity.answer import build
    from planner.capacity.search import check_load
    from planner.hardware.catalog import resolve_gpu, shipped_catalog
    from planner.models.sources import load_model

    check_load(load)
    packset = packset or load_packset(tuple(template.rules))
    catalog = shipped_catalog()
    specs = []
    for name in gpus:
        spec = resolve_gpu(name)
        if spec not in specs:
            specs.append(spec)
    specs = specs or sorted(catalog.values(), key=lambda s: s.id)
    max_gpus = max_gpus_per_replica or int(packset.param_values()["capacity_max_gpus_per_replica"])
    arch = load_model(template.model)
    if template.pinned.data_parallel_size and not arch.is_moe:
        raise InputError(f"--dp {template.pinned.data_parallel_size}: capacity sizes the data parallelism of a dense "
                         "model as replicas; drop --dp (a MoE model's in-engine DP may be pinned)")
    return build(template, load, specs, packset, arch, max_gpus, set(catalog))


from planner.auditlog import append_audit  # noqa: E402, F401 - moved there (whole records only); re-exported
