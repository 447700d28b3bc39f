"""`rules lint`: every problem in a set of packs, plus checks against the engine's measured limits.

Files are read with the loader's bounds (regular files, 4 MiB, MAX_PACK_VALUES values each and
MAX_SITE_PACK_VALUES for the site packs together); a pack outside the shipped rules directory must
be `layer: site`; blank reasons and control characters in any pack text are errors (schema.py).

Errors make a pack unusable (exit 2). Findings are legal but risky with durable-rules 2.0.28
(shared/spec/durable-rules.md section 9): more than 48 distinct tests on one fact type (the engine
fails at 64), more than 400 rules in one stage, more than 400 sibling tests (it hangs at 513).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import PackError, PackProblemsError
from planner.policy.loader import PackSet, ValueBudget, build_packset, is_shipped, read_pack_file
from planner.policy.schema import Pack

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
    """Every problem in one run: each file's own (every rule, param and override), then those across
    the layered set (references, overrides, duplicates) for what did parse, then engine limits."""
    report = LintReport()
    packs = []
    broken: set[str] = set()
    unreadable = False  # a file with nothing usable: cross-pack checks would only report its absence
    budget = ValueBudget()  # the same bounds as a plan's load: what lint accepts, a plan can read
    for f in files:
        try:
            shipped = is_shipped(f)  # anything else is a site pack: `layer: vendor` is refused
            packs.append(read_pack_file(f, site=not shipped, budget=None if shipped else budget))
        except PackError as e:
            report.errors += _problems(e)
            if isinstance(e, PackProblemsError) and isinstance(e.partial, Pack):
                packs.append(e.partial)
                broken |= e.broken
            else:
                unreadable = True
    if unreadable:
        return report
    try:
        packset = build_packset(packs, broken=frozenset(broken))
    except PackError as e:
        report.errors += [p for p in _problems(e) if p not in report.errors]
        return report
    if report.errors:
        return report
    report.packset = packset
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
