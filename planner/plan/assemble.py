"""Assembly of the PlanResponse from the settled decisions: memory, speed, verdict, warnings, artifacts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from typing import Any

from packaging.version import Version

from planner import __version__
from planner.artifacts.launch import Launch, plan_launch
from planner.errors import InputError
from planner.features.pins import SERVING_FEATURE_PINS
from planner.hardware.select import nvlink_group
from planner.machine import Hardware
from planner.memory import MemoryResult
from planner.models.params import active_params, total_params
from planner.plan.context import PlanContext, Settings, baseline_scales, free_memory_fields, memory_for, sampler_sort
from planner.plan.layouts import Layout
from planner.plan.options import alternatives, fixes
from planner.plan.settle import Candidate
from planner.plan.speed import perf_for, perf_json
from planner.policy.resolver import Decision
from planner.schemas import PlanResponse
from planner.units import GiB


def no_rule(key: str, value: Any, why: str) -> Decision:
    return Decision(key=key, value=value, by="planner", reason=why)


def assemble(ctx: PlanContext, decisions: dict[str, Decision], cands: list[Candidate], settings: Settings,
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
            decisions.setdefault(key, no_rule(key, v, why))
    decisions.setdefault("pipeline_parallel_size", no_rule("pipeline_parallel_size", layout.pp, "follows the layout"))
    decisions.setdefault("data_parallel_size", no_rule("data_parallel_size", layout.dp, "GPUs left over"))
    if ctx.arch.is_moe:
        decisions.setdefault("enable_expert_parallel",
                             no_rule("enable_expert_parallel", layout.ep, "follows the layout"))
    max_len = int(decisions["max_model_len"].value) if "max_model_len" in decisions else ctx.target_len
    kv = settings.kv_cache_dtype
    mem = memory_for(ctx, layout, kv, settings, max_len, baseline_scales(ctx))
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
        gates = [f for f in chosen.forbidden if f["rule"].startswith("gate.")]
        reason = ("vLLM would refuse this launch: " if gates else "forbidden by policy: ") + "; ".join(
            f"{f['rule']}: {f['reason']}" for f in (gates or chosen.forbidden))
    elif not mem.fits:
        feasible = False
        need = mem.bytes_per_block * -(-max_len // settings.block_size)
        reason = (f"one {max_len}-token sequence needs {need / GiB:.2f} GiB of KV cache but only "
                  f"{mem.kv_cache_bytes / GiB:.2f} GiB is left")
    if req.input_len + req.output_len > max_len:  # vLLM rejects such requests (prompt + output > max_model_len)
        warnings.append({"code": "W-CONTEXT", "rule": None, "message": (
            f"requests of {req.input_len} + {req.output_len} tokens exceed max_model_len {max_len}: vLLM rejects "
            "them; speeds assume they fit")})
    free_check = free_memory_check(ctx, mem)
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
    perf = perf_for(ctx, layout, mem, settings) if mem.weights_fit else None  # nothing runs: no speed to report
    if perf is None and mem.weights_fit:
        warnings.append({"code": "W-PERF-UNKNOWN", "rule": None,
                         "message": "no bandwidth/FLOPs for this GPU; speeds are reported as 0"})
    from planner.features.report import features_report
    from planner.plan.speed import perf_inputs

    feat_inp = perf_inputs(ctx, layout, mem, settings) if mem.weights_fit else None
    features, feat_warnings = features_report(ctx, mem, feat_inp, perf,
                                              max_num_batched_tokens=settings.max_num_batched_tokens,
                                              max_model_len=max_len)
    warnings += feat_warnings
    config = {
        "tensor_parallel_size": layout.tp, "pipeline_parallel_size": layout.pp, "data_parallel_size": layout.dp,
        "enable_expert_parallel": layout.ep,
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
        "hardware": {"gpu": hw.name, "catalog_id": hw.spec.id if hw.spec else None,
                     "vendor": hw.vendor, "gpu_count": hw.count,
                     "nodes": hw.nodes, "gpus_per_node": hw.gpus_per_node, "memory_bytes_per_gpu": hw.memory_bytes,
                     "interconnect": hw.interconnect, "probed": hw.probed, **devices_json(hw, layout, tp_group)},
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
        "performance": perf_json(req, perf, ctx.run.params),
        "features": features,
        "decisions": {k: decision_json(d) for k, d in sorted(decisions.items())},
        "audit": audit,
        "warnings": warnings,
        "alternatives": alternatives(ctx, cands, layout, kv, settings, max_len),
        # Fixes are memory changes; when a launch gate refuses every layout here (the GPU, the version), none helps
        "fixes": [] if feasible or _all_gated(cands) else fixes(ctx, layout, kv, settings, mem, max_len),
        "dropped": [{"tensor_parallel_size": c.layout.tp, "pipeline_parallel_size": c.layout.pp,
                     "data_parallel_size": c.layout.dp, "enable_expert_parallel": c.layout.ep,
                     "kv_cache_dtype": c.kv_cache_dtype,
                     "reasons": [f"{f['rule']}: {f['reason']}" for f in c.forbidden]} for c in cands if c.forbidden],
    }
    identity = {"config": config, "model": arch.name, "gpu": hw.name, "packs": ctx.packset.sha256, "v": ctx.version}
    if req.pinned.sampler:  # sizes the activation peak; not a vllm serve setting, so not in `config`
        identity["sampler"] = req.pinned.sampler
    served = {k: v for k, v in req.pinned.model_dump().items() if k in SERVING_FEATURE_PINS and v is not None}
    if served or req.prefix_hit_rate or req.spec_acceptance_rate:  # a different server, or a different workload
        identity["features"] = {**served, "prefix_hit_rate": req.prefix_hit_rate,
                                "spec_acceptance_rate": req.spec_acceptance_rate}
    body["plan_id"] = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    launch = launch_for(ctx, config, feasible)
    body["launch"] = {**asdict(launch), "multi_node": launch.multi_node}
    if feasible:
        body["serve_command"] = serve_command(
            arch.name, serve_args(config, ctx.run.params, pinned=req.pinned, launch=launch, version=ctx.version),
            visible_devices=body["hardware"].get("visible_devices"), vendor=body["hardware"]["vendor"])
    else:  # a command that cannot start is not printed as if it could: say what is missing (the fixes say how)
        body["serve_command"] = f"# nothing to run: {reason}; see fixes"
    return PlanResponse.model_validate(body)


def _all_gated(cands: list[Candidate]) -> bool:
    """Every candidate is refused by a launch gate (gate.*): vLLM will not start on these GPUs at this version
    whatever the memory, so no memory fix is offered (the reason names the gate)."""
    return bool(cands) and all(any(f["rule"].startswith("gate.") for f in c.forbidden) for c in cands)


def launch_for(ctx: PlanContext, config: dict[str, Any], feasible: bool) -> Launch:
    """The deployment shape; a shape vLLM cannot run is an input error, unless the plan is infeasible anyway."""
    try:
        return plan_launch(config, nodes=ctx.hw.nodes, gpus_per_node=ctx.hw.gpus_per_node, is_moe=ctx.arch.is_moe,
                           model=ctx.arch.name)
    except InputError:
        if feasible:
            raise
        gpus = config["tensor_parallel_size"] * config["pipeline_parallel_size"]
        return Launch(nodes=1, gpus_per_pod=gpus, data_parallel_in_engine=config["data_parallel_size"])


def free_memory_check(ctx: PlanContext, mem: MemoryResult) -> str | None:
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


def devices_json(hw: Hardware, layout: Layout, tp_group: list[int]) -> dict[str, Any]:
    sel = hw.selection
    if sel is None:
        return {}
    chosen = {id(d) for d in sel.devices}
    devices = [{"index": d.index, "name": d.name, "mig_profile": d.mig_profile, "memory_total_bytes": d.memory_bytes,
                "free_bytes": d.free_bytes, "processes": list(d.processes), "selected": id(d) in chosen,
                "healthy": d.healthy, "left_out": list(d.left_out)}
               for d in sel.all_devices]
    visible = sel.visible_devices
    if layout.dp == 1 and layout.pp == 1 and tp_group and len(tp_group) < len(sel.devices):
        visible = ",".join(str(i) for i in tp_group)  # pin the NVLink-joined group
    return {"devices": devices, "visible_devices": visible, "tp_group": tp_group if layout.tp > 1 else [],
            "notes": list(sel.notes)}


def decision_json(d: Decision) -> dict[str, Any]:
    out = d.to_json()
    if d.key == "quantization" and out["value"] == "none":
        out["value"] = None  # facts spell "no quantization" as "none"; the contract (like vLLM) uses null
    return out
