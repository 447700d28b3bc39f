"""`rules lint`: every problem in a set of packs, plus checks against the engine's measured limits.

Errors make a pack unusable (exit 2). Findings are legal but risky with durable-rules 2.0.28
(shared/spec/durable-rules.md section 9): more than 48 distinct tests on one fact type (the engine
fails at 64), more than 400 rules in one stage, more than 400 sibling tests (it hangs at 513).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import PackError, PackProblemsError
from planner.policy.loader import PackSet, build_packset, read_pack_file

MAX_TESTS_PER_FACT_TYPE = 48
MAX_RULES_PER_STAGE = 400


@dataclass
class LintReport:
    errors: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    packset: PackSet | None = None


def _problems(e: PackError) -> list[str]:
    return e.problems if isinstance(e, PackProblemsError) else [str(e)]


def lint(files: list[Path]) -> LintReport:
    """Validate each file on its own (collecting errors), then the layered set, then engine limits."""
    report = LintReport()
    packs = []
    for f in files:
        try:
            packs.append(read_pack_file(f))
        except PackError as e:
            report.errors += _problems(e)
    if report.errors:
        return report
    try:
        report.packset = build_packset(packs)
    except PackError as e:
        report.errors += _problems(e)
        return report
    for stage in ("baseline", "sizing", "recommend"):
        rules = [r for r in report.packset.rules if r.rule.stage == stage and r.enabled]
        if len(rules) > MAX_RULES_PER_STAGE:
            report.findings.append(f"{stage} stage has {len(rules)} rules; durable-rules is tested up to "
                                   f"{MAX_RULES_PER_STAGE} per ruleset")
        tests: dict[str, set[str]] = {}
        for r in rules:
            for p in r.rule.when:
                for c in p.conditions:
                    tests.setdefault(p.fact, set()).add(f"{c.prop} {c.op} {c.value!r}")
        for fact, distinct in sorted(tests.items()):
            if len(distinct) > MAX_TESTS_PER_FACT_TYPE:
                report.findings.append(f"{stage} stage: {len(distinct)} distinct conditions on '{fact}' facts; "
                                       f"durable-rules fails above 64 (error 303), keep below "
                                       f"{MAX_TESTS_PER_FACT_TYPE}")
    return report
