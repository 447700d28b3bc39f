"""Read-only views of a pack set for `rules list` and `rules show`: the merged policy with provenance.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from planner.policy.loader import PackSet


def packs_view(ps: PackSet) -> list[dict[str, Any]]:
    return [{**p.audit(), "rules": len(p.pack.rules), "params": len(p.pack.params),
             "overrides": len(p.pack.overrides)} for p in ps.packs]


def _setters(ps: PackSet) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in ps.rules:
        for a in r.rule.then:
            if a.verb == "set":
                out.setdefault(a.target, []).append(r.id)
    return out


def effective_view(ps: PackSet) -> dict[str, Any]:
    """Every rule and param after layering, each field with where its value came from."""
    rules = []
    for r in ps.rules:
        where = f"{r.source}:{r.line}"
        prov = {"enabled": where, "priority": where}
        for ov in r.overridden:
            for fld in ov["changed"]:
                prov[fld] = f"override by {ov['by']}: {ov['reason']}"
        rules.append({
            "id": r.id, "stage": r.rule.stage, "pack": r.pack, "layer": r.layer, "defined_at": where,
            "enabled": r.enabled, "priority": r.priority, "provenance": prov, "description": r.rule.description,
            "when": {p.alias: {"fact": p.fact, **{c.prop: {c.op: _plain(c.value)} for c in p.conditions}}
                     for p in r.rule.when},
            "then": [a.model_dump(exclude_none=True, mode="json") for a in r.rule.then],
        })
    setters = _setters(ps)
    params = {n: {"value": p.value, "default": p.decl.default, "set_by": p.set_by, "type": p.decl.type,
                  "unit": p.decl.unit, "min": p.decl.min, "max": p.decl.max, "source": p.decl.source,
                  "description": p.decl.description, "declared_by": _declarer(ps, n),
                  "may_be_set_by_rules": setters.get(n, [])} for n, p in ps.params.items()}
    return {"packs": packs_view(ps), "params": params, "rules": rules, "overrides": ps.overrides}


def _declarer(ps: PackSet, name: str) -> str:
    for p in ps.packs:
        if name in p.pack.params and p.layer == "vendor":
            return p.name
    return "?"


def _plain(v: Any) -> Any:
    dump = getattr(v, "model_dump", None)
    return dump() if dump else v
