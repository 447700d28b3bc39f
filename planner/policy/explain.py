"""`rules explain RULE --facts FILE`: why a rule fired or did not, condition by condition.

Pure: no I/O. Uses the reference evaluator's condition semantics (the engine agrees with it on
every pack test), after running the baseline stage so `{param: ...}` conditions use the values
that stage would produce for these facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.errors import InputError
from planner.policy import PolicyRun
from planner.policy.compiler import CRule, compile_rules
from planner.policy.loader import PackSet
from planner.policy.reference import cond_holds, evaluate
from planner.policy.schema import FactRef


@dataclass
class ConditionCheck:
    prop: str
    op: str
    expected: Any
    seen: Any
    holds: bool


@dataclass
class FactCheck:
    fact_id: str
    conditions: list[ConditionCheck] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return all(c.holds for c in self.conditions)


@dataclass
class Explanation:
    rule_id: str
    stage: str
    pack: str
    priority: int
    enabled: bool
    fired: int  # number of activations over these facts
    aliases: dict[str, tuple[str, list[FactCheck]]]  # alias -> (fact type, checks per fact of that type)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule_id, "stage": self.stage, "pack": self.pack, "priority": self.priority,
                "enabled": self.enabled, "fired": self.fired, "notes": self.notes,
                "aliases": {a: {"fact": t, "facts": [{"id": fc.fact_id, "matches": fc.matches, "conditions": [
                    {"prop": c.prop, "op": c.op, "expected": c.expected, "seen": c.seen, "holds": c.holds}
                    for c in fc.conditions]} for fc in checks]} for a, (t, checks) in self.aliases.items()}}


def explain(packset: PackSet, rule_id: str, facts: list[dict[str, Any]]) -> Explanation:
    try:
        er = packset.rule(rule_id)
    except KeyError:
        raise InputError(f"unknown rule {rule_id!r} (see `vllm-planner rules list`)") from None
    run = PolicyRun(packset, evaluator="reference")
    run.run_stage("baseline", facts)
    rule = next((r for r in compile_rules(packset.rules, er.rule.stage, run.params) if r.id == rule_id), None)
    notes = []
    if rule is None:  # disabled: compile it anyway to show the conditions
        notes.append("the rule is disabled" + (f" ({er.overridden[-1]['reason']})" if er.overridden else ""))
        enabled_copy = [type(er)(**{**er.__dict__, "enabled": True})]
        rule = compile_rules(enabled_copy, er.rule.stage, run.params)[0]
    fired = len(evaluate((rule,), facts)) if er.enabled else 0
    aliases = {p.alias: (p.fact, _checks(rule, p.alias, facts)) for p in rule.patterns}
    for alias, (fact_type, checks) in aliases.items():
        if not checks:
            notes.append(f"no '{fact_type}' fact was given, so '{alias}' cannot match")
        elif not any(fc.matches for fc in checks):
            notes.append(f"no '{fact_type}' fact satisfies every condition of '{alias}'")
    return Explanation(rule_id=rule_id, stage=er.rule.stage, pack=er.pack, priority=er.priority, enabled=er.enabled,
                       fired=fired, aliases=aliases, notes=notes)


def _checks(rule: CRule, alias: str, facts: list[dict[str, Any]]) -> list[FactCheck]:
    pat = next(p for p in rule.patterns if p.alias == alias)
    out = []
    for f in sorted((f for f in facts if f.get("type") == pat.fact), key=lambda f: f["id"]):
        fc = FactCheck(fact_id=f["id"])  # matching facts are listed first, below
        for c in pat.conds:
            if isinstance(c.value, FactRef):
                expected: Any = f"= {c.value.ref} (join)"
                holds = True  # judged per combination; shown for completeness
            else:
                expected = c.value
                holds = cond_holds(c, f, {})
            fc.conditions.append(ConditionCheck(prop=c.prop, op=c.op, expected=expected, seen=f.get(c.prop, "<absent>"),
                                                holds=holds))
        out.append(fc)
    return sorted(out, key=lambda fc: not fc.matches)
