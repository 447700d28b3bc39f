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
    doc = _load_doc(path)
    layers = (doc.get("layers") if isinstance(doc, dict) else None) or []
    return [read_pack_file(p, site=True) for p in _layer_files(path, layers)]


def run_test_file(path: Path, base_packs: list[Any], evaluators: tuple[str, ...]) -> list[CaseResult]:
    """All cases of one *.test.yaml file."""
    doc = _load_doc(path)
    validate_test_doc(doc, str(path))
    extra = [read_pack_file(p, site=True) for p in _layer_files(path, doc.get("layers") or [])]
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
            more = [read_pack_file(p, site=True) for p in _layer_files(path, case["layers"])]
            case_packset = build_packset([*base_packs, *more])
        failures, fired = check_case(case_packset, _facts(facts, f"{path} {name}"), case.get("expect") or {},
                                     evaluators)
        results.append(CaseResult(file=str(path), name=name, passed=not failures, failures=failures, fired=fired))
    return results


MAX_TEST_FILES = 1000  # pack test files one `rules test` runs


def find_test_files(paths: list[Path]) -> list[Path]:
    """The test files named, or the *.test.yaml files under named directories (a bounded walk)."""
    from planner.policy.loader import _walk

    out: list[Path] = []
    for p in paths:
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += _walk(p, recursive=True, want=lambda n: n.endswith(".test.yaml"), skip=(),
                         max_files=MAX_TEST_FILES)
        elif p.exists():
            raise PackError(f"{p}: not a regular file or directory, expected a pack test")
        else:
            raise PackError(f"{p}: no such test file or directory")
    if len(out) > MAX_TEST_FILES:
        raise PackError(f"{len(out)} pack test files; at most {MAX_TEST_FILES} are run at once")
    return out


def _load_doc(path: Path) -> Any:
    """A user-named YAML file (pack test or facts) as plain data, bounded like a rule pack (loader)."""
    from planner.policy.loader import load_bounded_yaml
    from planner.yamlio import to_plain

    return to_plain(load_bounded_yaml(Path(path), "a YAML file", lines=False)[0])


MAX_FACTS = 20_000  # facts one `rules explain` evaluates (an audit record of a plan holds a few hundred)
MAX_AUDIT_RECORD_BYTES = 16 << 20  # the last record of an audit log, read from the file's end


def _read_last_record(path: Path) -> Any:
    """The last JSON Lines record of an audit log, reading only the file's last MAX_AUDIT_RECORD_BYTES:
    regular files only (a FIFO or device never blocks or floods), opened without waiting."""
    import json
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise PackError(f"{path}: no such file") from None
    except OSError as e:
        raise PackError(f"{path}: cannot read: {e.strerror or e}") from None
    chunks: list[bytes] = []
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise PackError(f"{path}: is a directory, not an audit log")
        if not stat.S_ISREG(st.st_mode):
            raise PackError(f"{path}: not a regular file, expected an audit log")
        start = max(0, st.st_size - MAX_AUDIT_RECORD_BYTES)
        left = st.st_size - start
        os.lseek(fd, start, os.SEEK_SET)
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise PackError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks).rstrip(b"\r\n \t")
    cut = data.rfind(b"\n")
    if cut < 0 and start > 0:
        raise PackError(f"{path}: the last audit record is larger than {MAX_AUDIT_RECORD_BYTES >> 20} MiB")
    last = data[cut + 1:]
    if not last.strip():
        return None
    try:
        return json.loads(last.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise PackError(f"{path}: not an audit log (JSON Lines): {type(e).__name__}") from None


def _audit_packs(path: Path, packs: Any) -> list[Path]:
    """The site packs an audit record was planned with, each checked before it is used: the record names
    them, but the user did not, so nothing is walked or trusted. A source is used only when it is a
    regular `.yaml` file whose pack still has the recorded sha256; anything else (a directory such as
    "/", a device, another file, a changed pack) is a one-line error naming the source, without echoing
    what is there."""
    import stat

    from planner.policy.loader import MAX_PACK_FILES, _pack_sha

    site = [p for p in packs if isinstance(p, dict) and p.get("layer") == "site"] if isinstance(packs, list) else []
    if len(site) > MAX_PACK_FILES:
        raise PackError(f"{path}: the audit record names {len(site)} site packs; at most {MAX_PACK_FILES} are read")
    out: list[Path] = []
    for entry in site:
        source, sha = entry.get("source"), entry.get("sha256")
        if not isinstance(source, str) or not source or not isinstance(sha, str):
            raise PackError(f"{path}: an audit record's site pack has no source or sha256")
        pack_path = Path(source)
        hint = f"{path}: the audit record's site pack {source!r}"
        fix = "; pass the packs to use with --rules"
        if pack_path.suffix not in (".yaml", ".yml"):
            raise PackError(f"{hint} is not a .yaml rule pack{fix}")
        try:
            regular = stat.S_ISREG(pack_path.stat().st_mode)
        except OSError:
            raise PackError(f"{hint} cannot be read{fix}") from None
        if not regular:
            raise PackError(f"{hint} is not a regular file{fix}")
        try:
            pack = read_pack_file(pack_path, fast=True, site=True)
        except PackError:
            raise PackError(f"{hint} is no longer the pack the record names{fix}") from None
        if _pack_sha(pack) != sha:
            raise PackError(f"{hint} has changed since the plan (sha256 differs){fix}")
        out.append(pack_path)
    return out


def _layer_files(path: Path, layers: Any) -> list[Path]:
    """A pack test's `layers`: files next to the test file, each a regular file (never a directory)."""
    import stat

    if not isinstance(layers, list) or not all(isinstance(p, str) and p for p in layers):
        raise PackError(f"{path}: layers must be a list of pack file paths")
    out = []
    for p in layers:
        f = (path.parent / p).resolve()
        try:
            mode = f.stat().st_mode
        except OSError:
            out.append(f)  # missing: the loader names it
            continue
        if not stat.S_ISREG(mode):
            raise PackError(f"{path}: layers: {p} is not a regular file, expected a rule pack")
        out.append(f)
    return out


def load_facts_file(path: Path, case: str | None = None) -> tuple[list[dict[str, Any]], list[Path]]:
    """Facts for `rules explain`, and the site packs they were evaluated with: a pack-test file
    (optionally one of its cases; its `layers`), a YAML/JSON list of facts, or an audit record
    written by `plan --audit-log` (JSON Lines: the last record; its site packs, verified by sha256).

    Bounded: regular files only (a FIFO or /dev/zero is refused, never read), a YAML file at most
    4 MiB and MAX_PACK_VALUES values, an audit record at most MAX_AUDIT_RECORD_BYTES, MAX_FACTS facts."""
    path = Path(path)
    doc: Any = _read_last_record(path) if path.suffix in (".jsonl", ".log") or path.name.endswith(".audit.json") \
        else _load_doc(path)
    packs: list[Path] = []
    if isinstance(doc, dict) and "input" in doc and isinstance(doc["input"], dict):
        packs = _audit_packs(path, doc.get("packs"))
        doc = doc["input"]  # an audit record
    elif isinstance(doc, dict) and doc.get("layers"):
        packs = _layer_files(path, doc["layers"])
    raw = doc.get("facts") if isinstance(doc, dict) else doc
    if not isinstance(raw, list):
        raise PackError(f"{path}: expected a list of facts, a pack test (facts: [...]) or an audit record")
    if len(raw) > MAX_FACTS:
        raise PackError(f"{path}: {len(raw):,} facts; `rules explain` evaluates at most {MAX_FACTS:,}")
    raw = copy.deepcopy(raw)
    for f in raw:
        if isinstance(f, dict) and "key" not in f and isinstance(f.get("id"), str) and ":" in f["id"]:
            f["key"] = f["id"].split(":", 1)[1]
        elif isinstance(f, dict) and isinstance(f.get("key"), str) and f["key"].startswith(f"{f.get('type')}:"):
            f["key"] = f["key"].split(":", 1)[1]
    if case is not None:
        cases = {c.get("name"): c for c in (doc.get("cases") or []) if isinstance(c, dict)} \
            if isinstance(doc, dict) else {}
        if case not in cases:
            raise PackError(f"{path}: no case named {case!r} (cases: {', '.join(map(str, cases)) or 'none'})")
        for fid, patch in (cases[case].get("patch") or {}).items():
            hit = [f for f in raw if isinstance(f, dict) and f"{f.get('type')}:{f.get('key', f.get('id'))}" == fid]
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
