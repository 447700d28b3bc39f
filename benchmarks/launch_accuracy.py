#!/usr/bin/env python3
"""Replay real vLLM launches through the planner and report the memory error per row and in summary.

Usage: python benchmarks/launch_accuracy.py [--json] [--all] [PATH_TO_vllm_launches.json]

Data: tests/data/calibration/vllm_launches.json (a copy of shared/calibration/vllm_launches.json:
vLLM startup numbers from GitHub issues and the llm-d-planner v0.19.0 H100 DEBUG logs). Each row is
planned with the row's own settings pinned (TP, PP, utilization, max_model_len, quantization) on
a GPU with the row's CUDA-visible memory, using the row's vLLM version (rows that do not state one
use the planner's oldest known V1 accounting, 0.8.5, and are marked). Reported: predicted vs logged
weights per GPU, KV cache GiB per GPU, and KV tokens, with relative errors.

By default only dense full-attention rows are scored (what the walking skeleton models); --all
adds MoE, MLA, sliding-window and hybrid rows, which issue 4 makes faithful.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.app import Hardware, plan  # noqa: E402
from planner.errors import PlannerError  # noqa: E402
from planner.hardware.catalog import resolve_gpu  # noqa: E402
from planner.models.arch import ModelArch, QuantInfo, parse_config  # noqa: E402
from planner.schemas import Pinned, PlanRequest  # noqa: E402

GiB = 2**30
DEFAULT_DATA = ROOT / "tests" / "data" / "calibration" / "vllm_launches.json"
H100_LOGGED_TOTAL_GIB = 79.19  # the llm-d v0.19 logs: "Free memory on device (78.68/79.19 GiB)"


def _arch(row: dict[str, Any], cfg: dict[str, Any]) -> ModelArch:
    arch = parse_config(cfg["raw_config"], name=row["model"], source="calibration")
    q = (row.get("quantization") or "").lower()
    if arch.quant is None and q.startswith("compressed-tensors"):
        bits = 8.0 if ("w8a8" in row["model"].lower() or "fp8" in row["model"].lower() or "int8" in q) else 4.0
        arch = replace(arch, quant=QuantInfo(method="compressed-tensors", weight_bits=bits))
    return arch


def _gpu_spec(row: dict[str, Any]) -> Any:
    try:
        return resolve_gpu((row.get("gpu_name") or "").split(" (")[0])
    except PlannerError:
        return None


def _memory_bytes(row: dict[str, Any]) -> int | None:
    if row.get("gpu_total_memory_gib"):
        return int(row["gpu_total_memory_gib"] * GiB)
    if row.get("source_group", "").startswith("llm-d-planner"):
        return int(H100_LOGGED_TOTAL_GIB * GiB)
    spec = _gpu_spec(row)
    return spec.memory_bytes if spec else None


def replay(row: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any] | None:
    rep = row["reported"]
    if rep.get("weights_gib") is None and rep.get("kv_cache_available_gib") is None:
        return None
    arch = _arch(row, cfg)
    tp, pp = row.get("tensor_parallel_size") or 1, row.get("pipeline_parallel_size") or 1
    spec, memory = _gpu_spec(row), _memory_bytes(row)
    if memory is None:
        raise PlannerError(f"GPU {row.get('gpu_name')!r} not identifiable")
    hw = Hardware(name=row.get("gpu_name") or "?", spec=spec, memory_bytes=memory, count=tp * pp,
                  nodes=1, gpus_per_node=tp * pp, interconnect="nvlink", free_bytes=None, probed=False)
    version = row.get("vllm_version")
    version_note = ""
    if not version or "dev" in version:
        version_note = f"version not stated ({row.get('engine')}); using 0.8.5 accounting"
        version = "0.8.5"
    online = "fp8" if (row.get("quantization") == "fp8" and arch.quant is None) else None
    pinned = Pinned(tensor_parallel_size=tp, pipeline_parallel_size=pp, quantization=online,
                    gpu_memory_utilization=row.get("gpu_memory_utilization"), max_model_len=row.get("max_model_len"),
                    max_num_seqs=row.get("max_num_seqs"), max_num_batched_tokens=row.get("max_num_batched_tokens"),
                    enforce_eager=row.get("enforce_eager"))
    req = PlanRequest(model=row["model"], gpus=tp * pp, vllm_version=version, pinned=pinned)
    p = plan(req, arch=arch, hw=hw)
    m = p.memory
    out: dict[str, Any] = {"id": row["id"], "model": row["model"], "attention": arch.attention_kind,
                           "moe": arch.is_moe, "version": version, "note": version_note, "tp": tp, "pp": pp}
    pairs = (("weights_gib", m.per_gpu.weights_bytes / GiB, rep.get("weights_gib")),
             ("kv_gib", m.per_gpu.kv_cache_bytes / GiB, rep.get("kv_cache_available_gib")),
             ("kv_tokens", m.kv_cache_tokens, rep.get("kv_cache_tokens")))
    for name, pred, logged in pairs:
        out[name] = {"predicted": round(pred, 3), "logged": logged,
                     "rel_error": round((pred - logged) / logged, 4) if logged else None}
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for key in ("weights_gib", "kv_gib", "kv_tokens"):
        errs = [abs(r[key]["rel_error"]) for r in rows if r[key]["rel_error"] is not None]
        if errs:
            summary[key] = {"rows": len(errs), "median_abs_rel_error": round(statistics.median(errs), 4),
                            "max_abs_rel_error": round(max(errs), 4),
                            "within_2pct": sum(e <= 0.02 for e in errs)}
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--all", action="store_true", help="also score MoE, MLA, sliding-window and hybrid rows")
    args = ap.parse_args()
    data = json.loads(Path(args.data).read_text())
    rows, skipped = [], []
    for row in data["launches"]:
        cfg = data["model_configs"].get(row["model"]) or {}
        if not cfg.get("raw_config"):
            skipped.append((row["id"], "no config.json in the calibration set"))
            continue
        try:
            r = replay(row, cfg)
        except PlannerError as e:
            skipped.append((row["id"], f"planner refused: {e}"))
            continue
        if r is None:
            skipped.append((row["id"], "no logged weights or KV"))
            continue
        if not args.all and (r["moe"] or r["attention"] != "full"):
            skipped.append((row["id"], f"{r['attention']}{' MoE' if r['moe'] else ''}: scored with --all (issue 4)"))
            continue
        rows.append(r)
    result = {"rows": rows, "summary": summarise(rows), "skipped": [{"id": i, "why": w} for i, w in skipped]}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def fmt(cell: dict[str, Any], digits: int = 2) -> str:
        if cell["logged"] is None:
            return f"{cell['predicted']:>10.{digits}f} /       -         "
        return f"{cell['predicted']:>10.{digits}f} / {cell['logged']:>10.{digits}f} {cell['rel_error']:+7.1%}"

    print(f"{'row':58} {'weights GiB pred/logged':>30} {'KV GiB pred/logged':>30} {'KV tokens pred/logged':>34}")
    for r in rows:
        print(f"{r['id'][:58]:58} {fmt(r['weights_gib']):>30} {fmt(r['kv_gib']):>30} {fmt(r['kv_tokens'], 0):>34}"
              + (f"  [{r['note']}]" if r["note"] else ""))
    print("\nsummary (|relative error|):")
    for k, s in result["summary"].items():
        print(f"  {k:12} rows {s['rows']:3}  median {s['median_abs_rel_error']:.2%}  max {s['max_abs_rel_error']:.2%}"
              f"  within 2%: {s['within_2pct']}/{s['rows']}")
    print(f"\nskipped {len(skipped)} rows:")
    for i, w in skipped:
        print(f"  {i}: {w}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
