"""Turn firings into effects and decisions, independent of the engine's firing order.

Pure: no I/O. Precedence for one decision key (first difference wins):
  1. a value pinned by the user on the command line (`by: "user"`);
  2. layer: site over vendor;
  3. higher rule priority (after site overrides);
  4. later pack load order (a pack given later with --rules beats an earlier one);
  5. smaller rule id (a stable, arbitrary tie-break).
Params: a site rule's `set` > a site pack's `params:` value > a vendor rule's `set` > the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from planner.policy.loader import EffectiveRule, PackSet
from planner.policy.reference import Firing
from planner.policy.schema import PLACEHOLDER, SAFE_SPEC, Action, FactRef, ParamRef

MAX_MESSAGE_CHARS = 1000  # a rendered reason or warning; many placeholders must not multiply a message


@dataclass(frozen=True)
class Proposal:
    """One rule's proposed value for a decision key."""

    key: str
    value: Any
    rule: str
    layer: str
    priority: int
    order: int
    reason: str

    def rank(self) -> tuple[int, int, int, str]:
        """Sort key: smaller ranks first (= wins)."""
        return (0 if self.layer == "site" else 1, -self.priority, -self.order, self.rule)


@dataclass(frozen=True)
class Decision:
    """The value chosen for one setting, the rule behind it and what it beat."""

    key: str
    value: Any
    by: str
    reason: str
    superseded: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "by": self.by, "reason": self.reason, "superseded": list(self.superseded)}


@dataclass
class StageEffects:
    """Everything one stage's firings asked for."""

    stage: str
    firings: list[dict[str, Any]] = field(default_factory=list)  # audit records
    proposals: list[Proposal] = field(default_factory=list)
    forbidden: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # candidate key -> [{rule, reason}]
    preferences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # candidate key -> [{rule, score}]
    warnings: list[dict[str, str]] = field(default_factory=list)
    sets: dict[str, list[Proposal]] = field(default_factory=dict)  # param -> proposals
    scales: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # quantity -> [{factor, rule}]


def render_text(template: str, bindings: dict[str, dict[str, Any]], params: dict[str, Any]) -> str:
    """Fill `{alias.prop:spec}` and `{param.NAME:spec}` placeholders; unknown ones stay as written."""

    def repl(m: re.Match[str]) -> str:
        scope, name, spec = m.group(1), m.group(2), m.group(3) or ""
        if scope == "param":
            if name not in params:
                return m.group(0)
            value = params[name]
        elif scope in bindings and name in bindings[scope]:
            value = bindings[scope][name]
        else:
            return m.group(0)
        if not SAFE_SPEC.match(spec):
            return str(value)
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            return str(value)

    text = PLACEHOLDER.sub(repl, template)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 1] + "…"


def _value(v: Any, bindings: dict[str, dict[str, Any]], params: dict[str, Any]) -> Any:
    if isinstance(v, ParamRef):
        return params[v.param]
    if isinstance(v, FactRef):
        return bindings.get(v.alias, {}).get(v.prop)
    return v


def _referenced(er: EffectiveRule) -> list[tuple[str, str]]:
    props: list[tuple[str, str]] = []
    for p in er.rule.when:
        props += [(p.alias, c.prop) for c in p.conditions]
    return props


def _candidate_alias(er: EffectiveRule) -> str | None:
    """The alias a forbid/prefer applies to: the rule's candidate (plan) or option (capacity) fact."""
    return next((p.alias for p in er.rule.when if p.fact in ("candidate", "option")), None)


def apply_firings(packset: PackSet, stage: str, firings: list[Firing], params: dict[str, Any]) -> StageEffects:
    """Translate firings into effects (in firing order, for the audit listing)."""
    rules = {r.id: r for r in packset.rules}
    fx = StageEffects(stage=stage)
    for f in firings:
        er = rules[f.rule_id]
        effects: list[dict[str, Any]] = []
        cand_alias = _candidate_alias(er)
        cand_key = f.bindings[cand_alias]["key"] if cand_alias else None
        for act in er.rule.then:
            effects.append(_apply(act, er, f, params, fx, cand_key))
        bindings = {f"{a}.{p}": f.bindings[a].get(p) for a, p in _referenced(er) if a in f.bindings}
        fx.firings.append({
            "seq": f.seq, "stage": stage, "rule": er.id, "pack": er.pack, "layer": er.layer,
            "priority": er.priority, "matched": {a: fact["id"] for a, fact in f.bindings.items()},
            "bindings": bindings, "effects": effects,
        })
    return fx


def _apply(act: Action, er: EffectiveRule, f: Firing, params: dict[str, Any], fx: StageEffects,
           cand_key: str | None) -> dict[str, Any]:
    b = f.bindings
    if act.verb in ("set", "recommend"):
        value = _value(act.value, b, params)
        reason = render_text(act.reason or er.rule.description, b, params)
        prop = Proposal(key=act.target, value=value, rule=er.id, layer=er.layer, priority=er.priority,
                        order=er.order, reason=reason)
        if act.verb == "set":
            fx.sets.setdefault(act.target, []).append(prop)
        else:
            fx.proposals.append(prop)
        return {act.verb: act.target, "value": value}
    if act.verb == "scale":
        factor = _value(act.factor, b, params)
        fx.scales.setdefault(act.target, []).append({"factor": factor, "rule": er.id})
        return {"scale": act.target, "factor": factor}
    if act.verb == "forbid":
        reason = render_text(act.reason or "", b, params)
        fx.forbidden.setdefault(str(cand_key), []).append({"rule": er.id, "reason": reason})
        return {"forbid": cand_key, "reason": reason}
    if act.verb == "prefer":
        score = _value(act.score, b, params)
        reason = render_text(act.reason or er.rule.description, b, params)
        fx.preferences.setdefault(str(cand_key), []).append({"rule": er.id, "score": score, "reason": reason})
        return {"prefer": cand_key, "score": score}
    message = render_text(act.message or "", b, params)
    fx.warnings.append({"code": act.target, "message": message, "rule": er.id})
    return {"warn": act.target}


def _why(winner: Proposal | None, loser: Proposal, pinned: bool) -> str:
    if pinned or winner is None:
        return "pinned by the user"
    if winner.layer != loser.layer:
        return f"{winner.layer} layer beats {loser.layer} layer"
    if winner.priority != loser.priority:
        return f"lower priority ({loser.priority} < {winner.priority})"
    if winner.order != loser.order:
        return "earlier pack in load order"
    return "rule id tie-break"


def resolve(proposals: list[Proposal], pinned: dict[str, Any] | None = None) -> dict[str, Decision]:
    """Pick one value per key; record the superseded proposals and why they lost."""
    pinned = pinned or {}
    by_key: dict[str, list[Proposal]] = {}
    for p in proposals:
        by_key.setdefault(p.key, []).append(p)
    out: dict[str, Decision] = {}
    for key in sorted(set(by_key) | set(pinned)):
        props = sorted(by_key.get(key, []), key=lambda p: (p.rank(), repr(p.value)))
        # One rule can fire several times for a key; keep its best-ranked proposal only.
        seen: set[tuple[str, str]] = set()
        unique = []
        for p in props:
            if (p.rule, repr(p.value)) not in seen:
                seen.add((p.rule, repr(p.value)))
                unique.append(p)
        if key in pinned:
            superseded = tuple({"rule": p.rule, "value": p.value, "why": "pinned by the user"} for p in unique)
            out[key] = Decision(key=key, value=pinned[key], by="user", reason="pinned on the command line",
                                superseded=superseded)
            continue
        winner, rest = unique[0], unique[1:]
        superseded = tuple({"rule": p.rule, "value": p.value, "why": _why(winner, p, False)} for p in rest)
        out[key] = Decision(key=key, value=winner.value, by=winner.rule, reason=winner.reason, superseded=superseded)
    return out


def resolve_params(packset: PackSet, sets: dict[str, list[Proposal]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Effective params after baseline `set` effects; returns (values, set_by)."""
    values = packset.param_values()
    set_by = {n: p.set_by for n, p in packset.params.items()}
    for name, props in sets.items():
        best = sorted(props, key=lambda p: (p.rank(), repr(p.value)))[0]
        # A site pack's explicit params: value beats a vendor rule's set; a site rule's set beats both.
        if best.layer == "vendor" and packset.params[name].set_by != "default":
            continue
        values[name] = best.value
        set_by[name] = f"rule:{best.rule}"
    return values, set_by
