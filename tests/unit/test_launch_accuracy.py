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
    """Regression guard over every replayable row (benchmarks/launch_accuracy.py --all).

    Issue 4's targets: weights within 3% on >= 95% of rows (met: 26/26) and KV tokens within 5% on
    >= 90% (22/25 = 88% today; the misses are vllm#21348, LMCache connector with an unstated version,
    vllm#17122, utilization not stated, and the 0.10.2 L40S MoE/EP row whose 1.4 GiB activation peak is
    not modelled). This test keeps both from getting worse.
    """
    rows = []
    for row in DATA["launches"]:
        cfg = DATA["model_configs"].get(row["model"]) or {}
        if cfg.get("raw_config"):
            r = la.replay(row, cfg)
            if r:
                rows.append(r)
    s = la.summarise(rows)
    assert s["weights_gib"]["rows"] >= 26 and s["weights_gib"]["within_3pct"] >= 0.95 * s["weights_gib"]["rows"]
    assert s["kv_tokens"]["rows"] >= 25 and s["kv_tokens"]["within_5pct"] >= 22
    assert s["kv_tokens"]["median_abs_rel_error"] < 0.01
