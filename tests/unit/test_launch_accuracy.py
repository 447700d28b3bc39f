"""Regression guard: planned memory vs the vLLM 0.19 H100 launches (benchmarks/launch_accuracy.py).

Weights are derived from the architecture alone, so the weights check is an accuracy claim. The
activation/non-torch constants in rules/core were fitted across these same logs, so the KV checks
guard against regressions rather than prove out-of-sample accuracy.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("launch_accuracy", ROOT / "benchmarks" / "launch_accuracy.py")
assert spec and spec.loader
la = importlib.util.module_from_spec(spec)
spec.loader.exec_module(la)

DATA = json.loads((ROOT / "tests" / "data" / "calibration" / "vllm_launches.json").read_text())


def dense_v019_rows() -> list[dict]:
    out = []
    for row in DATA["launches"]:
        cfg = DATA["model_configs"].get(row["model"]) or {}
        if row.get("vllm_version") != "0.19.0" or not cfg.get("raw_config"):
            continue
        if not row["id"].startswith("llmd-planner-v0.19.0"):
            continue  # the DEBUG logs of one H100 setup; issue rows lack the GPU or the settings
        r = la.replay(row, cfg)
        if r and not r["moe"] and r["attention"] == "full":
            out.append(r)
    return out


def test_dense_v019_rows_within_tolerance() -> None:
    rows = dense_v019_rows()
    assert len(rows) >= 12
    weights = [abs(r["weights_gib"]["rel_error"]) for r in rows]
    assert max(weights) < 0.04, [(r["id"], r["weights_gib"]) for r in rows]  # Mistral-Small: vision tower uncounted
    assert sorted(weights)[len(weights) // 2] < 0.005
    for r in rows:
        if "mistral" in r["id"]:
            continue  # multimodal: the vision tower is not modelled yet (issue 4)
        assert abs(r["kv_gib"]["rel_error"]) < 0.02, (r["id"], r["kv_gib"])
        assert abs(r["kv_tokens"]["rel_error"]) < 0.02, (r["id"], r["kv_tokens"])


def test_all_rows_summary_holds() -> None:
    """Issue 4's targets over every replayable row (benchmarks/launch_accuracy.py): weights within 3% on >= 95%
    of rows and KV tokens within 5% on >= 90%.

    23/25 KV-token rows are within 5% today. The two misses state too little to replay: vllm#21348 runs an
    LMCache KV connector on an unstated version, and vllm#17122 states no utilization. The 0.10.2 L40S MoE/EP row
    is replayed with the PyTorch-native sampler its full log announces (ROW_FACTS).
    """
    rows = []
    for row in DATA["launches"]:
        cfg = DATA["model_configs"].get(row["model"]) or {}
        if cfg.get("raw_config"):
            r = la.replay(row, cfg)
            if r:
                rows.append(r)
    s = la.summarise(rows)
    assert s["weights_gib"]["rows"] >= 26 and s["kv_tokens"]["rows"] >= 25
    assert la.targets_met(s) == {"weights_within_3pct_on_95pct": True, "kv_tokens_within_5pct_on_90pct": True}
    assert s["kv_tokens"]["median_abs_rel_error"] < 0.01
