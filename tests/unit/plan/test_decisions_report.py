"""benchmarks/decisions.py: every case of decision_cases.yaml (expected values from vLLM's source, recipes or a
hand calculation in the case) agrees with the plan, except the disagreements explained in the issue notes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Explained in issue 17's closing note: over PCIe the speed model prefers PP2 to TP2 for this MoE model.
KNOWN_DISAGREEMENTS = {"qwen3-30b-fp8-2x4090-latency"}


def test_every_decision_case_agrees_with_the_expert(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("decisions", ROOT / "benchmarks" / "decisions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["total"] >= 30
    disagree = {c["id"]: c["misses"] for c in report["cases"] if not c["agree"]}
    assert set(disagree) <= KNOWN_DISAGREEMENTS, disagree
