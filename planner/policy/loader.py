"""Load vendor and site rule packs, layer them, and check everything the engine will not.

Load order (later packs win ties between rules of the same layer and priority):
  1. vendor packs shipped in rules/ (each rules/<name>/pack.yaml, then any rules/<name>/*.yaml), sorted;
  2. the site directory, $VLLM_PLANNER_SITE_DIR or ~/.config/vllm-planner/rules.d (*.yaml, lexical order);
  3. $VLLM_PLANNER_RULES (os.pathsep-separated files or directories);
  4. each --rules PATH in the order given.

Site packs may set declared params (type/bounds checked), override `enabled`/`priority` of existing
rules with a reason, and add `site.*` rules. They cannot change a vendor rule's conditions: to do
that, disable it with a reason and add a site rule.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from planner import __version__
from planner.errors import PackError, PackProblemsError
from planner.policy.facts import FACT_SCHEMA, field_kind
from planner.policy.schema import (
    FactRef,
    Pack,
    ParamDecl,
    ParamRef,
    Rule,
    check_decision_value,
    check_param_value,
    parse_pack,
)

# Quantities a baseline `scale` may multiply (applied by the calculators).
SCALABLE = (
    "weights_bytes",
    "activation_peak_bytes",
    "non_torch_bytes",
    "cuda_graph_bytes",
    "decode_step_ms",
    "prefill_ms",
)


@dataclass(frozen=True)
class LoadedPack:
    """A validated pack with where it came from."""

    pack: Pack
    source: str
    sha256: str
    order: int

    @property
    def name(self) -> str:
        return self.pack.name

    @property
    def layer(self) -> str:
        return self.pack.layer

    def audit(self) -> dict[str, Any]:
        return {"name": self.pack.name, "version": self.pack.version, "layer": self.pack.layer,
                "source": self.source, "sha256": self.sha256}


@dataclass(frozen=True)
class EffectiveParam:
    """A param's value for this pack set, and who set it."""

    name: str
    decl: ParamDecl
    value: Any
    set_by: str  # pack name that supplied the value ("default" when the declaration's default)


@dataclass(frozen=True)
class EffectiveRule:
    """A rule after overrides: enabled flag and priority as the resolver will use them."""

    rule: Rule
    pack: str
    layer: str
    order: int
    source: str
    line: int
    enabled: bool
    priority: int
    overridden: tuple[dict[str, Any], ...] = ()
    sublines: dict[str, int] = field(default_factory=dict)  # "then[0]", "when.gpu.family" -> line

    @property
    def id(self) -> str:
        return self.rule.id


@dataclass
class PackSet:
    """Everything the compiler and resolver need: packs, effective params and rules."""

    packs: list[LoadedPack]
    params: dict[str, EffectiveParam]
    rules: list[EffectiveRule]
    overrides: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for p in self.packs:
            h.update(p.sha256.encode())
        return h.hexdigest()

    def param_values(self) -> dict[str, Any]:
        return {n: p.value for n, p in self.params.items()}

    def rule(self, rule_id: str) -> EffectiveRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def _pack_sha(pack: Pack) -> str:
    data = pack.model_dump(mode="json", by_alias=True, exclude={"source", "lines"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_pack_file(path: Path, *, fast: bool = False) -> Pack:
    """Load and validate one pack file (`fast`: no line numbers, for the happy path)."""
    from planner.yamlio import YamlError, load_yaml_file

    try:
        doc = load_yaml_file(path, fast=fast)
    except YamlError as e:
        raise PackError(str(e)) from None
    return parse_pack(doc, str(path))


def _pack_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.yaml") if "tests" not in p.relative_to(path).parts
                       and not p.name.endswith(".test.yaml"))
        if not files:
            raise PackError(f"{path}: no *.yaml rule packs in this directory")
        return files
    raise PackError(f"{path}: no such rule pack file or directory")


def vendor_pack_paths() -> list[Path]:
    """Pack files shipped in rules/ (tests excluded)."""
    from planner.resources import rules_dir

    return _pack_files(rules_dir())


def site_pack_paths(rules: tuple[str, ...] = (), *, use_env: bool = True) -> list[Path]:
    """Site pack files in load order: site dir, $VLLM_PLANNER_RULES, then --rules."""
    paths: list[Path] = []
    if use_env:
        site_dir = os.environ.get("VLLM_PLANNER_SITE_DIR")
        default_dir = Path(site_dir) if site_dir else Path.home() / ".config" / "vllm-planner" / "rules.d"
        if default_dir.is_dir():
            paths += sorted(default_dir.glob("*.yaml"))
        elif site_dir:
            raise PackError(f"$VLLM_PLANNER_SITE_DIR={site_dir}: no such directory")
        for entry in filter(None, os.environ.get("VLLM_PLANNER_RULES", "").split(os.pathsep)):
            paths += _pack_files(Path(entry))
    for entry in rules:
        paths += _pack_files(Path(entry))
    return paths


def load_packset(rules: tuple[str, ...] = (), *, use_env: bool = True, vendor_paths: list[Path] | None = None,
                 with_lines: bool = False) -> PackSet:
    """Load vendor + site packs and build the effective pack set.

    Plans use the fast loader (no line numbers) and reload with line tracking only to report an
    error; `with_lines` (the `rules` commands) keeps every rule's file:line for display.
    """
    files = (vendor_pack_paths() if vendor_paths is None else vendor_paths) + site_pack_paths(rules, use_env=use_env)
    if not with_lines:
        try:
            return build_packset([read_pack_file(p, fast=True) for p in files])
        except PackError:
            pass
    return build_packset([read_pack_file(p) for p in files])


def _check_requires(pack: Pack, loaded: list[LoadedPack]) -> None:
    for key, spec in pack.requires.items():
        if key != "planner":
            raise PackError(f"{pack.source}: requires.{key}: unknown requirement (expected 'planner')")
        try:
            ok = Version(__version__) in SpecifierSet(spec, prereleases=True)
        except InvalidSpecifier:
            raise PackError(f"{pack.source}: requires.planner: invalid version range {spec!r}") from None
        if not ok:
            raise PackError(f"{pack.source}: requires.planner: needs planner {spec}, this is {__version__}")
    for at in pack.applies_to:
        target = next((p for p in loaded if p.name == at.pack), None)
        if target is None:
            raise PackError(f"{pack.source}: applies_to: pack {at.pack!r} is not loaded")
        try:
            ok = Version(target.pack.version) in SpecifierSet(at.version)
        except InvalidSpecifier:
            raise PackError(f"{pack.source}: applies_to: invalid version range {at.version!r}") from None
        if not ok:
            raise PackError(f"{pack.source}: applies_to: {at.pack} {target.pack.version} is outside {at.version}")


def build_packset(packs: list[Pack]) -> PackSet:
    """Layer validated packs (vendor packs first) into a PackSet, checking cross-pack references."""
    packs = sorted(packs, key=lambda p: 0 if p.layer == "vendor" else 1)  # stable: keeps order within a layer
    loaded: list[LoadedPack] = []
    decls: dict[str, tuple[ParamDecl, str]] = {}
    values: dict[str, tuple[Any, str]] = {}
    rules: dict[str, EffectiveRule] = {}
    names: dict[str, str] = {}
    overrides_log: list[dict[str, Any]] = []
    for order, pack in enumerate(packs):
        if pack.name in names:
            raise PackError(f"{pack.source}: pack name {pack.name!r} is already loaded from {names[pack.name]}")
        names[pack.name] = pack.source
        _check_requires(pack, loaded)
        for pname, decl in pack.params.items():
            if isinstance(decl, ParamDecl):
                if pname in decls:
                    raise PackError(f"{pack.source}: params.{pname}: already declared by pack {decls[pname][1]!r}")
                decls[pname] = (decl, pack.name)
                values[pname] = (decl.default, "default")
            else:
                where = f"{pack.source}:{pack.lines.get(f'params.{pname}', 0)}: params.{pname}"
                if pname not in decls:
                    raise PackError(f"{where}: not declared by any vendor pack")
                try:
                    check_param_value(decls[pname][0], decl)
                except ValueError as e:
                    raise PackError(f"{where}: {e}") from None
                values[pname] = (decl, pack.name)
        for k, ov in enumerate(pack.overrides):
            if ov.rule not in rules:
                raise PackError(f"{pack.source}:{pack.lines.get(f'overrides[{k}]', 0)}: overrides[{k}]: unknown rule "
                                f"{ov.rule!r} (no loaded pack defines it)")
            old = rules[ov.rule]
            changed: dict[str, Any] = {}
            if ov.enabled is not None and ov.enabled != old.enabled:
                changed["enabled"] = [old.enabled, ov.enabled]
            if ov.priority is not None and ov.priority != old.priority:
                changed["priority"] = [old.priority, ov.priority]
            record = {"rule": ov.rule, "changed": changed, "by": pack.name, "reason": ov.reason}
            overrides_log.append(record)
            rules[ov.rule] = EffectiveRule(
                rule=old.rule, pack=old.pack, layer=old.layer, order=old.order, source=old.source, line=old.line,
                enabled=old.enabled if ov.enabled is None else ov.enabled,
                priority=old.priority if ov.priority is None else ov.priority,
                overridden=(*old.overridden, record), sublines=old.sublines,
            )
        for i, rule in enumerate(pack.rules):
            if rule.id in rules:
                prev = rules[rule.id]
                raise PackError(f"{pack.source}:{pack.lines.get(f'rules[{i}]', 0)}: rules[{i}]: duplicate rule id "
                                f"{rule.id!r} (already defined in {prev.source}:{prev.line}); "
                                "disable it with an override and add a site.* rule instead")
            prefix = f"rules[{i}]."
            sub = {k[len(prefix):]: v for k, v in pack.lines.items() if k.startswith(prefix)}
            rules[rule.id] = EffectiveRule(rule=rule, pack=pack.name, layer=pack.layer, order=order,
                                           source=pack.source, line=pack.lines.get(f"rules[{i}]", 0),
                                           enabled=rule.enabled, priority=rule.priority, sublines=sub)
        loaded.append(LoadedPack(pack=pack, source=pack.source, sha256=_pack_sha(pack), order=order))
    params = {n: EffectiveParam(name=n, decl=decls[n][0], value=values[n][0], set_by=values[n][1]) for n in decls}
    packset = PackSet(packs=loaded, params=params, rules=list(rules.values()), overrides=overrides_log)
    problems: list[str] = []
    for er in packset.rules:
        try:
            check_rule_refs(er, params)
        except PackError as e:
            problems.append(str(e))
    if problems:
        raise PackProblemsError(problems)
    return packset


def _where(er: EffectiveRule, path: str) -> str:
    """`file:line: rule-id: path: message`, with the line of the condition or action when known."""
    location = path.split(":", 1)[0]
    line = er.sublines.get(location) or er.line
    return f"{er.source}:{line}: {er.id}: {path}"


def check_rule_refs(er: EffectiveRule, params: dict[str, EffectiveParam]) -> None:
    """Check param references, fact refs and value types against the declarations and facts schema."""
    rule = er.rule
    aliases = {p.alias: p.fact for p in rule.when}
    seen_aliases: list[str] = []
    for pat in rule.when:
        for cond in pat.conditions:
            path = f"when.{pat.alias}.{cond.prop}"
            kind = field_kind(pat.fact, cond.prop)
            val = cond.value
            if isinstance(val, ParamRef):
                if val.param not in params:
                    raise PackError(_where(er, f"{path}: undeclared param {val.param!r}"))
                val = params[val.param].value
            if isinstance(val, FactRef):
                if val.alias not in aliases:
                    raise PackError(_where(er, f"{path}: ref to unknown alias {val.alias!r}"))
                if val.alias == pat.alias or val.alias not in seen_aliases:
                    raise PackError(_where(er, f"{path}: ref {val.ref!r} must name an alias listed earlier in 'when'"))
                if val.prop not in FACT_SCHEMA[aliases[val.alias]] and val.prop != "key":
                    raise PackError(_where(er, f"{path}: unknown field {val.prop!r} of fact {aliases[val.alias]!r}"))
                continue
            _check_cond_type(er, path, cond.op, kind, val)
        seen_aliases.append(pat.alias)
    for i, act in enumerate(rule.then):
        path = f"then[{i}]"
        for v in (act.value, act.factor, act.score):
            if isinstance(v, ParamRef) and v.param not in params:
                raise PackError(_where(er, f"{path}: undeclared param {v.param!r}"))
            if isinstance(v, FactRef):
                if v.alias not in aliases:
                    raise PackError(_where(er, f"{path}: ref to unknown alias {v.alias!r}"))
                if v.prop not in FACT_SCHEMA[aliases[v.alias]]:
                    raise PackError(_where(er, f"{path}: unknown field {v.prop!r} of fact {aliases[v.alias]!r}"))
        if act.verb == "recommend":
            literal = params[act.value.param].value if isinstance(act.value, ParamRef) else act.value
            if not isinstance(literal, FactRef):
                problem = check_decision_value(act.target, literal)
                if problem:
                    raise PackError(_where(er, f"{path}: recommend {act.target}: {problem}"))
        if act.verb == "set":
            if act.target not in params:
                raise PackError(_where(er, f"{path}: set: undeclared param {act.target!r}"))
            if isinstance(act.value, (bool, int, float, str)):
                try:
                    check_param_value(params[act.target].decl, act.value)
                except ValueError as e:
                    raise PackError(_where(er, f"{path}: set {act.target}: {e}")) from None
            if rule.stage != "baseline":
                raise PackError(_where(er, f"{path}: 'set' belongs in the baseline stage"))
        if act.verb == "scale":
            if act.target not in SCALABLE:
                raise PackError(_where(er, f"{path}: scale: unknown quantity {act.target!r} "
                                           f"(expected {', '.join(SCALABLE)})"))
            if rule.stage != "baseline":
                raise PackError(_where(er, f"{path}: 'scale' belongs in the baseline stage"))
        if act.verb in ("forbid", "prefer"):
            if "candidate" not in aliases.values():
                raise PackError(_where(er, f"{path}: '{act.verb}: candidate' needs a candidate alias in 'when'"))
            if rule.stage != "sizing":
                raise PackError(_where(er, f"{path}: '{act.verb}' belongs in the sizing stage (candidates are "
                                           "dropped and scored before settings are recommended)"))
            if act.verb == "prefer" and isinstance(act.score, (bool, str)):
                raise PackError(_where(er, f"{path}: prefer score must be a number, got {act.score!r}"))
        if rule.stage == "baseline" and "candidate" in aliases.values():
            raise PackError(_where(er, "when: baseline rules cannot match candidates (they are built later)"))


def _check_cond_type(er: EffectiveRule, path: str, op: str, kind: str, val: Any) -> None:
    numeric = kind in ("int", "float")
    if op in ("gt", "gte", "lt", "lte") and not numeric:
        raise PackError(_where(er, f"{path}: '{op}' needs a numeric field, this one is {kind}"))
    if op == "exists":
        return
    items = val if isinstance(val, list) else [val]
    for item in items:
        ok = (
            (kind == "bool" and isinstance(item, bool))
            or (kind == "str" and isinstance(item, str))
            or (numeric and isinstance(item, (int, float)) and not isinstance(item, bool))
        )
        if not ok:
            raise PackError(_where(er, f"{path}: {item!r} does not match the field's type ({kind})"))
