"""Pure-Python reference evaluator of the compiled IR: the test oracle for the engine adapter.

Pure: no I/O. Semantics mirror what the engine adapter relies on: a rule fires once per
combination of distinct facts (one fact never fills two patterns of one rule) that satisfies every
pattern; properties a condition names must exist; joins are equality on `key` or a field.
Also the fallback evaluator where durable_rules cannot be installed (Python 3.13+).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from planner.policy.compiler import CCond, CPattern, CRule
from planner.policy.schema import FactRef


@dataclass(frozen=True)
class Firing:
    """One rule activation: which facts it matched (alias -> fact dict)."""

    seq: int
    rule_id: str
    bindings: dict[str, dict[str, Any]]


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _eq(a: Any, b: Any) -> bool:
    # durable compares booleans as numbers (True == 1); the loader type-checks conditions so this
    # only matters for joins, where both sides have the same type.
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


def cond_holds(c: CCond, fact: dict[str, Any], bound: dict[str, dict[str, Any]]) -> bool:
    """Does one condition hold for `fact`, given the facts already bound to earlier aliases?"""
    present = c.prop in fact
    if c.op == "exists":
        return present == bool(c.value)
    if not present:
        return False
    v = fact[c.prop]
    target = c.value
    if isinstance(target, FactRef):
        other = bound.get(target.alias)
        if other is None or target.prop not in other:
            return False
        return _eq(v, other[target.prop])
    if c.op == "eq":
        return _eq(v, target)
    if c.op == "ne":
        return not _eq(v, target)
    if c.op == "in":
        return any(_eq(v, t) for t in target)
    if not (_num(v) and _num(target)):
        return False
    return {"gt": v > target, "gte": v >= target, "lt": v < target, "lte": v <= target}[c.op]


def pattern_holds(p: CPattern, fact: dict[str, Any], bound: dict[str, dict[str, Any]]) -> bool:
    return fact.get("type") == p.fact and all(cond_holds(c, fact, bound) for c in p.conds)


def evaluate(rules: tuple[CRule, ...], facts: list[dict[str, Any]]) -> list[Firing]:
    """All activations, in (priority desc, rule order, fact order) order."""
    ordered = sorted(facts, key=lambda f: (f["type"], f["id"]))
    firings: list[Firing] = []
    for rule in sorted(rules, key=lambda r: (1000 - r.priority, r.order, r.id)):
        pools = [[f for f in ordered if f.get("type") == p.fact] for p in rule.patterns]
        for combo in itertools.product(*pools):
            if len({f["id"] for f in combo}) != len(combo):
                continue
            bound: dict[str, dict[str, Any]] = {}
            ok = True
            for p, f in zip(rule.patterns, combo, strict=True):
                if not pattern_holds(p, f, bound):
                    ok = False
                    break
                bound[p.alias] = f
            if ok:
                firings.append(Firing(seq=len(firings), rule_id=rule.id, bindings=dict(bound)))
    return firings
