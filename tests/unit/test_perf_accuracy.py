"""Regression guard: the speed model vs measured vLLM serving points (benchmarks/perf_accuracy.py).

Issue 6's targets per metric class (ITL, TTFT, throughput): median |error| <= 10%, >= 80% of points
within 25%, measured inside the printed range for >= 80%. In sample they hold except "within 25%" for
TTFT (11 of 15); the misses and the worst points are explained in benchmarks/README.md. This test keeps
every figure from getting worse, and the pack's FITTED params equal to what the fit produces.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("perf_accuracy", ROOT / "benchmarks" / "perf_accuracy.py")
assert spec and spec.loader
pa = importlib.util.module_from_spec(spec)
sys.modules["perf_accuracy"] = pa  # dataclasses look their module up while the class is built
spec.loader.exec_module(pa)


@pytest.fixture(scope="module")
def prepared() -> list:
    return pa.load()


def test_in_sample_targets(prepared: list) -> None:
    s = pa.summary(pa.score(prepared, {}))
    assert s["itl"]["n"] >= 37 and s["ttft"]["n"] >= 15 and s["tput"]["n"] >= 15
    for cls in ("itl", "ttft", "tput"):
        assert s[cls]["median_abs_error"] <= pa.TARGET_MEDIAN, (cls, s[cls])
        assert s[cls]["coverage"] >= pa.TARGET_COVER, (cls, s[cls])
    assert s["itl"]["within_25pct"] >= pa.TARGET_WITHIN, s["itl"]
    assert s["tput"]["within_25pct"] >= pa.TARGET_WITHIN, s["tput"]
    assert s["ttft"]["within_25pct"] >= 11 / 15 - 1e-9, s["ttft"]  # target 80%: see the module docstring


def test_ranges_are_no_wider_than_needed(prepared: list) -> None:
    s = pa.summary(pa.score(prepared, {}))
    assert s["itl"]["median_range_width"] < 0.35
    assert s["tput"]["median_range_width"] < 0.6
    assert s["ttft"]["median_range_width"] < 1.05  # 15 TTFT points, serving overheads 35-60 ms: wide (see README)


def test_pack_holds_the_fit(prepared: list) -> None:
    start = prepared[0].params
    fitted = pa.fit(prepared, start)
    for k, v in fitted.items():
        assert start[k] == pytest.approx(v, rel=1e-3, abs=1e-3), k


def test_held_out_gpu_groups(prepared: list) -> None:
    """Fit without a GPU group, predict it: ITL keeps the targets on GPUs the fit has not seen."""
    s = pa.summary(pa.held_out(prepared, prepared[0].params, "group", nested=False))
    assert s["itl"]["median_abs_error"] <= pa.TARGET_MEDIAN
    assert s["itl"]["within_25pct"] >= pa.TARGET_WITHIN
    assert s["tput"]["median_abs_error"] <= pa.TARGET_MEDIAN
    assert s["tput"]["within_25pct"] >= pa.TARGET_WITHIN
    # TTFT of short prompts is mostly the harness's serving overhead (35-60 ms): 20% held out (see README)
    assert s["ttft"]["median_abs_error"] <= 0.21
