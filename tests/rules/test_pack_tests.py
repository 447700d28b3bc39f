"""Every case of every shipped pack test (rules/**/tests/*.test.yaml), through both evaluators."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.policy import engine
from planner.policy.loader import read_pack_file, vendor_pack_paths
from planner.policy.packtest import find_test_files, run_test_file
from planner.resources import rules_dir

EVALUATORS = ("durable", "reference") if engine.available() else ("reference",)
BASE = [read_pack_file(p) for p in vendor_pack_paths()]
FILES = find_test_files([rules_dir()])


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_pack_file(path: Path) -> None:
    """All cases pass and both evaluators agree."""
    results = run_test_file(path, BASE, EVALUATORS)
    failed = {r.name: r.failures for r in results if not r.passed}
    assert not failed, failed


def test_wrong_expectation_fails(tmp_path: Path) -> None:
    """The runner is not vacuous: a wrong expected decision is reported."""
    t = tmp_path / "wrong.test.yaml"
    t.write_text(
        "facts:\n"
        "  - {type: gpu, key: '0', family: hopper, memory_gib: 79.0}\n"
        "  - {type: request, key: '0', mode: balanced, vllm_minor: 33, vllm_version: '0.33.0'}\n"
        "expect:\n"
        "  decisions: {gpu_memory_utilization: {value: 0.5}}\n"
        "  not_fired: [rec.util.vllm-default]\n"
    )
    (res,) = run_test_file(t, BASE, EVALUATORS)
    assert not res.passed
    assert any("expected value 0.5, got 0.92" in f for f in res.failures)
    assert any("expected rec.util.vllm-default not to fire" in f for f in res.failures)


def test_every_vendor_rule_is_exercised() -> None:
    """Coverage: every enabled vendor rule fires in at least one shipped case."""
    fired: set[str] = set()
    for f in FILES:
        for r in run_test_file(f, BASE, ("reference",)):
            fired.update(r.fired)
    rules = {r.id for p in BASE for r in p.rules}
    assert rules - fired == set()
