"""Rule-pack tests: YAML tables of facts in, expected firings/decisions/warnings out.

Every case runs through the durable-rules adapter AND the pure-Python reference evaluator; the
two must produce the same firings (as a multiset) or the case fails. Format (rule-pack-format.md 9.4):

    tests_for: [rule ids...]            # informational, used by --coverage
    layers: [extra pack files...]       # optional, relative to the test file: site packs to add
    facts:                              # as the calculators would emit them
      - {type: gpu, key: "0", family: hopper, fp8_supported: true}
    expect:
      fired: [ids]        not_fired: [ids]
      decisions: {key: {value: V, by: rule-id}}
      warnings: [codes]   forbidden: [candidate keys]
    cases:                              # variants: patch facts by "type:key", override expect
      - name: ...
        patch: {"candidate:tp1": {kv_pressure: 0.3}}
        expect: {...}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import PackError
from planner.policy import PolicyRun
from planner.policy.facts import FactError, normalise_fact
from planner.policy.loader import PackSet, build_packset, read_pack_file
from planner.policy.resolver import resolve

FLOAT_TOL = 1e-9
_TOP_KEYS = {"tests_for", "layers", "facts", "expect", "cases"}
_EXPECT_KEYS = {"fired", "not_fired", "decisions", "warnings", "forbidden"}
_CASE_KEYS = {"name", "patch", "expect", "layers"}
_DECISION_KEYS = {"value", "by"}


def _check_keys(where: str, got: Any, allowed: set[str]) -> None:
    if not isinstance(got, dict):
        raise PackError(f"{where}: expected a mapping, got {got!r}")
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise PackError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(sorted(allowed))})")


def validate_test_doc(doc: Any, source: str) -> None:
    """A misspelt key must fail loudly, never let a test pass vacuously."""
    _check_keys(source, doc, _TOP_KEYS)
    if "facts" not in doc:
        raise PackError(f"{source}: a pack test needs 'facts' (and 'expect' or 'cases')")
    expects = [("expect", doc.get("expect"))]
    for i, case in enumerate(doc.get("cases") or []):
        _check_keys(f"{source}: cases[{i}]", case, _CASE_KEYS)
        expects.append((f"cases[{i}].expect", case.get("expect")))
    for where, exp in expects:
        if exp is None:
            continue
        _check_keys(f"{source}: {where}", exp, _EXPECT_KEYS)
        for key, want in (exp.get("decisions") or {}).items():
            _check_keys(f"{source}: {where}.decisions.{key}", want, _DECISION_KEYS)


@dataclass
class CaseResult:
    file: str
    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)


def _facts(raw: list[Any], source: str) -> list[dict[str, Any]]:
    out = []
    for i, f in enumerate(raw):
        if not isinstance(f, dict) or "type" not in f:
            raise PackError(f"{source}: facts[{i}]: each fact needs a 'type'")
        key = str(f.get("key", f.get("id", i)))
        fields = {k: v for k, v in f.items() if k not in ("type", "key", "id")}
        try:
            out.append(normalise_fact(str(f["type"]), key, fields))
        except FactError as e:
            raise PackError(f"{source}: facts[{i}]: {e}") from None
    return out


def _evaluate(packset: PackSet, facts: list[dict[str, Any]], evaluator: str) -> tuple[PolicyRun, list[Any]]:
    run = PolicyRun(packset, evaluator=evaluator)
    proposals = []
    for stage in ("baseline", "sizing", "recommend"):
        proposals += run.run_stage(stage, facts).proposals
    return run, proposals


def _signatures(run: PolicyRun) -> list[tuple[str, str]]:
    return sorted((f["rule"], str(sorted(f["matched"].items()))) for s in run.stages.values() for f in s.firings)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= FLOAT_TOL
    return bool(a == b)


def check_case(packset: PackSet, facts: list[dict[str, Any]], expect: dict[str, Any], evaluators: tuple[str, ...]
               ) -> tuple[list[str], list[str]]:
    """Run one case; return (failures, fired rule ids)."""
    failures: list[str] = []
    runs = {ev: _evaluate(packset, facts, ev) for ev in evaluators}
    if len(runs) == 2 and _signatures(runs["durable"][0]) != _signatures(runs["reference"][0]):
        failures.append(f"durable_rules and the reference evaluator disagree: "
                        f"{_signatures(runs['durable'][0])} != {_signatures(runs['reference'][0])}")
    run, proposals = runs[evaluators[0]]
    fired = sorted({f["rule"] for s in run.stages.values() for f in s.firings})
    for rid in expect.get("fired", []) or []:
        if rid not in fired:
            failures.append(f"expected {rid} to fire; it did not")
    for rid in expect.get("not_fired", []) or []:
        if rid in fired:
            failures.append(f"expected {rid} not to fire; it did")
    decisions = resolve(proposals)
    for key, want in (expect.get("decisions") or {}).items():
        got = decisions.get(key)
        if got is None:
            failures.append(f"decision {key}: expected {want}, no rule decided it")
            continue
        if "value" in want and not _same(got.value, want["value"]):
            failures.append(f"decision {key}: expected value {want['value']!r}, got {got.value!r} (by {got.by})")
        if "by" in want and got.by != want["by"]:
            failures.append(f"decision {key}: expected by {want['by']}, got {got.by}")
    codes = sorted({w["code"] for s in run.stages.values() for w in s.warnings})
    for code in expect.get("warnings", []) or []:
        if code not in codes:
            failures.append(f"expected warning {code}; got {codes}")
    forbidden = sorted(k for s in run.stages.values() for k in s.forbidden)
    for key in expect.get("forbidden", []) or []:
        if key not in forbidden:
            failures.append(f"expected {key} to be forbidden; forbidden: {forbidden}")
    return failures, fired


def test_layers(path: Path) -> list[Any]:
    """The extra (site) packs a test file loads, validated."""
    from planner.yamlio import load_yaml_file, to_plain

    doc = to_plain(load_yaml_file(path))
    layers = (doc.get("layers") if isinstance(doc, dict) else None) or []
    return [read_pack_file((path.parent / p).resolve()) for p in layers]


def run_test_file(path: Path, base_packs: list[Any], evaluators: tuple[str, ...]) -> list[CaseResult]:
    """All cases of one *.test.yaml file."""
    from planner.yamlio import load_yaml_file, to_plain

    doc = to_plain(load_yaml_file(path))
    validate_test_doc(doc, str(path))
    extra = [read_pack_file((path.parent / p).resolve()) for p in doc.get("layers", []) or []]
    packset = build_packset([*base_packs, *extra])
    known = {r.id for r in packset.rules}
    named = set(doc.get("tests_for") or [])
    for case in [doc, *(doc.get("cases") or [])]:
        exp = case.get("expect") or {}
        named |= set(exp.get("fired") or []) | set(exp.get("not_fired") or [])
        named |= {d["by"] for d in (exp.get("decisions") or {}).values() if "by" in d}
    unknown = sorted(named - known)
    if unknown:
        raise PackError(f"{path}: names rule {unknown[0]!r}, which no loaded pack defines "
                        "(a typo, or a site pack missing from 'layers')")
    base_facts = _facts(doc["facts"], str(path))
    results = [CaseResult(file=str(path), name="base", passed=True)]
    failures, fired = check_case(packset, base_facts, doc.get("expect") or {}, evaluators)
    results[0].failures, results[0].passed, results[0].fired = failures, not failures, fired
    for i, case in enumerate(doc.get("cases", []) or []):
        name = str(case.get("name", f"cases[{i}]"))
        facts = copy.deepcopy(doc["facts"])
        for fid, patch in (case.get("patch") or {}).items():
            hit = [f for f in facts if f"{f['type']}:{f.get('key', f.get('id'))}" == fid]
            if not hit:
                raise PackError(f"{path}: cases[{i}].patch: no fact {fid!r} (facts are named 'type:key')")
            hit[0].update(patch)
        case_packset = packset
        if case.get("layers"):
            more = [read_pack_file((path.parent / p).resolve()) for p in case["layers"]]
            case_packset = build_packset([*base_packs, *more])
        failures, fired = check_case(case_packset, _facts(facts, f"{path} {name}"), case.get("expect") or {},
                                     evaluators)
        results.append(CaseResult(file=str(path), name=name, passed=not failures, failures=failures, fired=fired))
    return results


def find_test_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(p.rglob("*.test.yaml"))
        else:
            raise PackError(f"{p}: no such test file or directory")
    return out


def load_facts_file(path: Path, case: str | None = None) -> tuple[list[dict[str, Any]], list[Path]]:
    """Facts for `rules explain`, and the site packs they were evaluated with: a pack-test file
    (optionally one of its cases; its `layers`), a YAML/JSON list of facts, or an audit record
    written by `plan --audit-log` (JSON Lines: the last record; its site packs by source path)."""
    import json

    from planner.yamlio import load_yaml_file, to_plain

    if path.suffix in (".jsonl", ".log") or path.name.endswith(".audit.json"):
        from planner.files import read_bounded

        raw = read_bounded(path, limit=256 << 20, what="an audit log", error=PackError)
        try:
            lines = [ln for ln in raw.decode("utf-8").splitlines() if ln.strip()]
            doc: Any = json.loads(lines[-1]) if lines else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise PackError(f"{path}: not an audit log (JSON Lines): {type(e).__name__}") from None
    else:
        doc = to_plain(load_yaml_file(path))
    packs: list[Path] = []
    if isinstance(doc, dict) and "input" in doc and isinstance(doc["input"], dict):
        packs = [Path(p["source"]) for p in doc.get("packs", []) if p.get("layer") == "site" and p.get("source")]
        doc = doc["input"]  # an audit record
    elif isinstance(doc, dict) and doc.get("layers"):
        packs = [(path.parent / p).resolve() for p in doc["layers"]]
    raw = doc.get("facts") if isinstance(doc, dict) else doc
    if not isinstance(raw, list):
        raise PackError(f"{path}: expected a list of facts, a pack test (facts: [...]) or an audit record")
    raw = copy.deepcopy(raw)
    for f in raw:
        if isinstance(f, dict) and "key" not in f and isinstance(f.get("id"), str) and ":" in f["id"]:
            f["key"] = f["id"].split(":", 1)[1]
        elif isinstance(f, dict) and isinstance(f.get("key"), str) and f["key"].startswith(f"{f.get('type')}:"):
            f["key"] = f["key"].split(":", 1)[1]
    if case is not None:
        cases = {c.get("name"): c for c in (doc.get("cases") or [])} if isinstance(doc, dict) else {}
        if case not in cases:
            raise PackError(f"{path}: no case named {case!r} (cases: {', '.join(map(str, cases)) or 'none'})")
        for fid, patch in (cases[case].get("patch") or {}).items():
            hit = [f for f in raw if f"{f['type']}:{f.get('key', f.get('id'))}" == fid]
            if not hit:
                raise PackError(f"{path}: case {case!r} patches unknown fact {fid!r}")
            hit[0].update(patch)
    return _facts(raw, str(path)), packs


def coverage(results: list[CaseResult], rule_ids: set[str]) -> dict[str, list[str]]:
    """Rules never fired, and rules that fired in every case (never shown not firing)."""
    fired_any: set[str] = set()
    fired_all = set(rule_ids)
    for r in results:
        fired_any |= set(r.fired)
        fired_all &= set(r.fired)
    return {"never_fired": sorted(rule_ids - fired_any), "never_not_fired": sorted(fired_all)}
