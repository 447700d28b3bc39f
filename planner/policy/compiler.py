"""Compile effective rules into an engine-neutral IR, and the IR into durable-rules dicts.

Pure: no I/O. Params are substituted at compile time, so a stage is compiled with the params in
force for it (baseline `set` effects change the params seen by sizing and recommend).

durable-rules hazards handled here (shared/spec/durable-rules.md section 11):
  - every pattern starts with a type discriminator, then an `$ex` guard per referenced property
    (a comparison on a missing property can be true);
  - `ne` becomes `$neq`, `in` becomes `$or` of equalities;
  - joins are equality only, on the `key` field, never on the reserved `id`/`sid`;
  - `pri` = 1000 - priority (lower fires first, unsigned short); it orders the audit listing only;
  - the action name (`run`) is the rule id; dicts are deep-copied before registration.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from planner.policy.loader import EffectiveRule
from planner.policy.schema import Action, FactRef, ParamRef


@dataclass(frozen=True)
class CCond:
    """A compiled condition: literal values, or an equality join on an earlier alias."""

    prop: str
    op: str
    value: Any  # literal, list of literals, or FactRef (eq only)


@dataclass(frozen=True)
class CPattern:
    alias: str
    fact: str
    conds: tuple[CCond, ...]


@dataclass(frozen=True)
class CRule:
    """A rule in engine-neutral form."""

    id: str
    stage: str
    priority: int
    layer: str
    pack: str
    order: int
    patterns: tuple[CPattern, ...]
    actions: tuple[Action, ...]


def _subst(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, ParamRef):
        return params[value.param]
    return value


def compile_rules(rules: list[EffectiveRule], stage: str, params: dict[str, Any]) -> tuple[CRule, ...]:
    """Enabled rules of one stage, params substituted, in a canonical order (pack order, then id)."""
    out = []
    for er in sorted(rules, key=lambda r: (r.order, r.id)):
        if not er.enabled or er.rule.stage != stage:
            continue
        pats = tuple(
            CPattern(alias=p.alias, fact=p.fact,
                     conds=tuple(CCond(prop=c.prop, op=c.op, value=_subst(c.value, params)) for c in p.conditions))
            for p in er.rule.when
        )
        out.append(CRule(id=er.id, stage=stage, priority=er.priority, layer=er.layer, pack=er.pack,
                         order=er.order, patterns=pats, actions=er.rule.then))
    return tuple(out)


def _durable_cond(c: CCond) -> dict[str, Any]:
    v = c.value
    if isinstance(v, FactRef):
        return {c.prop: {v.alias: "key" if v.prop == "key" else v.prop}}
    if c.op == "eq":
        return {c.prop: v}
    if c.op == "ne":
        return {"$neq": {c.prop: v}}
    if c.op in ("gt", "gte", "lt", "lte"):
        return {f"${c.op}": {c.prop: v}}
    if c.op == "in":
        return {"$or": [{c.prop: item} for item in v]} if v else {"$and": [{c.prop: "\x00never"}, {c.prop: "\x01"}]}
    raise ValueError(f"no durable form for op {c.op!r}")  # 'exists' is handled by the caller


def to_durable(rules: tuple[CRule, ...]) -> dict[str, Any]:
    """The durable-rules ruleset dict for compiled rules (one ruleset per stage)."""
    ruleset: dict[str, Any] = {}
    for r in rules:
        all_: list[dict[str, Any]] = []
        for p in r.patterns:
            terms: list[dict[str, Any]] = [{"type": p.fact}]
            exists = {c.prop for c in p.conds if c.op == "exists" and c.value is False}
            guarded = sorted({c.prop for c in p.conds} - exists)
            terms += [{"$ex": {prop: 1}} for prop in guarded]
            terms += [{"$nex": {prop: 1}} for prop in sorted(exists)]
            terms += [_durable_cond(c) for c in p.conds if c.op != "exists"]
            all_.append({p.alias: {"$and": terms}})
        ruleset[r.id] = {"all": all_, "pri": 1000 - r.priority, "run": r.id}
    return copy.deepcopy(ruleset)


def ruleset_hash(rules: tuple[CRule, ...]) -> str:
    """Content hash of a compiled stage: the engine registers one ruleset per hash per process."""
    blob = json.dumps(to_durable(rules), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
