"""Pure-Python reference evaluator of the compiled IR: the test oracle for the engine adapter.

Pure: no I/O. Semantics mirror what the engine adapter relies on: a rule fires once per
combination of distinct facts (one fact never fills two patterns of one rule) that satisfies every
pattern; properties a condition names must exist; joins are equality on `key` or a field.
Also the fallback evaluator where durable_rules cannot be installed (Python 3.13+).

Bounded like the engine: patterns are joined one alias at a time (a combination is abandoned at its
first failing pattern, so the work is what the matches need, not the product of the fact counts), and
an evaluation that runs past $VLLM_PLANNER_ENGINE_TIMEOUT (the durable worker's limit, default 10 s)
ends in a one-line RuleEngineError. The loader also caps the aliases of one rule (schema.py
MAX_ALIASES_PER_RULE, MAX_ALIASES_PER_FACT), the same for both evaluators.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from planner.errors import RuleEngineError
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


def _timeout_s() -> float:
    from planner.policy.worker import _timeout  # the durable worker's limit, read the same way

    return _timeout()


_CHECK_EVERY = 2048  # pattern tests between two looks at the clock


class _Join:
    """One rule's matches: a depth-first join over its patterns, with a deadline."""

    def __init__(self, rule: CRule, pools: list[list[dict[str, Any]]], deadline: float, limit: float,
                 firings: list[Firing]) -> None:
        self.rule, self.pools, self.deadline, self.limit, self.firings = rule, pools, deadline, limit, firings
        self.bound: dict[str, dict[str, Any]] = {}
        self.used: set[Any] = set()
        self.steps = 0

    def run(self, i: int = 0) -> None:
        rule, n = self.rule, len(self.rule.patterns)
        p = rule.patterns[i]
        for f in self.pools[i]:
            self.steps += 1
            if self.steps % _CHECK_EVERY == 0 and time.monotonic() > self.deadline:
                raise RuleEngineError(
                    f"the reference evaluator did not finish the {rule.stage} stage within {self.limit:g} s "
                    f"(rule {rule.id} joins {n} facts); raise $VLLM_PLANNER_ENGINE_TIMEOUT or simplify the rule")
            if f["id"] in self.used or not pattern_holds(p, f, self.bound):
                continue
            self.bound[p.alias] = f
            if i + 1 == n:
                self.firings.append(Firing(seq=len(self.firings), rule_id=rule.id, bindings=dict(self.bound)))
            else:
                self.used.add(f["id"])
                self.run(i + 1)
                self.used.discard(f["id"])
            del self.bound[p.alias]


def evaluate(rules: tuple[CRule, ...], facts: list[dict[str, Any]], *, timeout_s: float | None = None
             ) -> list[Firing]:
    """All activations, in (priority desc, rule order, fact order) order.

    A rule's matches are the combinations of distinct facts, one per pattern in `when` order, each fact
    satisfying its pattern given the facts bound before it (joins refer to earlier aliases only), listed
    in the order itertools.product would give them. Raises RuleEngineError past `timeout_s` (default:
    $VLLM_PLANNER_ENGINE_TIMEOUT).
    """
    if not rules:
        return []
    limit = _timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + limit
    ordered = sorted(facts, key=lambda f: (f["type"], f["id"]))
    firings: list[Firing] = []
    for rule in sorted(rules, key=lambda r: (1000 - r.priority, r.order, r.id)):
        pools = [[f for f in ordered if f.get("type") == p.fact] for p in rule.patterns]
        if rule.patterns and all(pools):
            _Join(rule, pools, deadline, limit, firings).run()
    return firings
