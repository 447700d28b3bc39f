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
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from planner import __version__
from planner.errors import PackError, PackProblemsError
from planner.policy.facts import FACT_SCHEMA, field_kind
from planner.policy.schema import (
    PLACEHOLDER,
    SAFE_SPEC,
    Action,
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


# Bounds on what one load reads (issue 22 item 7, 8): a pack is refused before it is parsed when it holds more
# YAML values than MAX_PACK_VALUES (the shipped core pack holds ~3,700; a 4 MiB file can hold two million,
# which would take minutes to build), and all the site packs of one load together hold at most
# MAX_SITE_PACK_VALUES. Line numbers (the slower round-trip loader) are kept for packs of at most
# MAX_LINE_TRACKED_VALUES values; bigger packs are reported without them. A directory named with --rules or
# $VLLM_PLANNER_RULES is walked at most MAX_WALK_DEPTH levels deep and MAX_WALK_ENTRIES entries wide, and one
# load reads at most MAX_PACK_FILES site pack files.
MAX_PACK_VALUES = 50_000
MAX_SITE_PACK_VALUES = 50_000
MAX_LINE_TRACKED_VALUES = 10_000
MAX_PACK_FILES = 64
MAX_WALK_ENTRIES = 4096
MAX_WALK_DEPTH = 3


def count_yaml_values(text: str, source: str, limit: int) -> int:
    """Scalars, mappings, sequences and aliases of `text`, counted from the parser's event stream (no
    document is built), stopping as soon as more than `limit` are seen: the cost is bounded by `limit`,
    not by the file. Syntax errors are left to the loader, which reports them with their line."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent

    kinds = (ScalarEvent, MappingStartEvent, SequenceStartEvent, AliasEvent)
    n = 0
    try:
        for event in YAML(typ="safe").parse(io.StringIO(text)):
            if isinstance(event, kinds):
                n += 1
                if n > limit:
                    break
    except (YAMLError, RecursionError, ValueError):
        pass
    return n


def is_shipped(path: Path) -> bool:
    """Is `path` one of the packs shipped in the planner's own rules directory?"""
    from planner.resources import rules_dir

    try:
        return Path(path).resolve().is_relative_to(rules_dir().resolve())
    except (OSError, RuntimeError):
        return False


@dataclass
class ValueBudget:
    """The YAML values the site packs of one load may hold together (MAX_SITE_PACK_VALUES)."""

    left: int = MAX_SITE_PACK_VALUES

    def take(self, n: int, path: Path) -> None:
        self.left -= n
        if self.left < 0:
            raise PackError(f"{path}: the site rule packs of this run hold more than {MAX_SITE_PACK_VALUES:,} "
                            "YAML values together; refusing to parse more")


def load_bounded_yaml(path: Path, what: str, *, lines: bool) -> tuple[Any, int]:
    """A user-named YAML file and its count of values: regular files only, at most 4 MiB and MAX_PACK_VALUES
    values (counted from the event stream before anything is built), aliases expanding to at most as many.

    With `lines` the round-trip loader keeps line numbers, for files of at most MAX_LINE_TRACKED_VALUES
    values; otherwise the C loader parses it, falling back to the round-trip loader for the YAML 1.2 forms
    libyaml refuses (`[a:b]`). Errors are PackErrors naming the file."""
    from planner.files import read_bounded
    from planner.yamlio import MAX_YAML_BYTES, YamlError, load_yaml_text, shape_problem

    try:
        st = os.stat(path)
    except OSError:
        st = None  # read_bounded names the problem
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > MAX_YAML_BYTES:
        raise PackError(f"{path}: file is larger than {MAX_YAML_BYTES >> 20} MiB; refusing to parse")
    raw = read_bounded(path, limit=MAX_YAML_BYTES, what=what, error=PackError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PackError(f"{path}: not UTF-8 text") from None
    values = count_yaml_values(text, str(path), MAX_PACK_VALUES)
    if values > MAX_PACK_VALUES:
        raise PackError(f"{path}: holds more than {MAX_PACK_VALUES:,} YAML values; at most {MAX_PACK_VALUES:,} are "
                        "read (the shipped core pack holds about 4,000); refusing to parse it")
    try:
        if lines and values <= MAX_LINE_TRACKED_VALUES:
            doc = load_yaml_text(text, str(path))
        else:
            try:
                doc = load_yaml_text(text, str(path), fast=True)
            except YamlError:
                doc = load_yaml_text(text, str(path))
    except YamlError as e:
        raise PackError(str(e)) from None
    problem = shape_problem(doc, max_values=MAX_PACK_VALUES)
    if problem:
        raise PackError(f"{path}: {problem}; refusing to expand")
    return doc, values


def read_pack_file(path: Path, *, fast: bool = False, site: bool = False, budget: ValueBudget | None = None) -> Pack:
    """Load and validate one pack file (`fast`: no line numbers, for the happy path).

    Only regular files are read, at most 4 MiB and MAX_PACK_VALUES values (counted before anything is
    built). A `site` pack (anything not shipped in the planner's rules directory) must say `layer: site`:
    vendor packs come only from the planner itself.
    """
    from planner.yamlio import YamlError, line_of

    path = Path(path)
    if fast and not site and budget is None:  # the shipped packs on a plan's happy path: memoised by yamlio
        from planner.yamlio import load_yaml_file

        try:
            return parse_pack(load_yaml_file(path, fast=True), str(path))
        except YamlError as e:
            raise PackError(str(e)) from None
    doc, values = load_bounded_yaml(path, "a rule pack", lines=not fast)
    if budget is not None:
        budget.take(values, path)
    if site and isinstance(doc, dict) and doc.get("layer") == "vendor":
        line = line_of(doc, "layer")
        raise PackError(f"{path}{f':{line}' if line else ''}: layer: 'vendor' packs come only from the planner's "
                        "own rules directory; a pack given with --rules, $VLLM_PLANNER_RULES or the site directory "
                        "must say 'layer: site'")
    return parse_pack(doc, str(path))


def _walk_error(path: Path, why: str) -> PackError:
    return PackError(f"{path}: {why}; name the files instead (a directory is read at most "
                     f"{MAX_WALK_DEPTH} levels deep and {MAX_WALK_ENTRIES:,} entries wide)")


def _is_pack_name(name: str) -> bool:
    return name.endswith(".yaml") and not name.endswith(".test.yaml")


def _walk(top: Path, *, recursive: bool, want: Any = _is_pack_name, skip: tuple[str, ...] = ("tests",),
          max_files: int = MAX_PACK_FILES) -> list[Path]:
    """Files under `top` whose name `want` accepts (default: `*.yaml` packs, not *.test.yaml, outside tests/
    directories), sorted by path. Symlinked directories are not followed; the walk is bounded in depth
    (MAX_WALK_DEPTH), entries seen (MAX_WALK_ENTRIES) and files found (`max_files`)."""
    found: list[Path] = []
    seen = 0
    stack: list[tuple[Path, int]] = [(top, 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            entries = os.scandir(directory)
        except OSError as e:
            raise PackError(f"{directory}: cannot read the directory: {e.strerror or e}") from None
        with entries:
            for entry in entries:
                seen += 1
                if seen > MAX_WALK_ENTRIES:
                    raise _walk_error(top, f"more than {MAX_WALK_ENTRIES:,} entries")
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if not recursive or entry.name in skip:
                        continue
                    if depth + 1 > MAX_WALK_DEPTH:
                        raise _walk_error(top, f"holds directories nested more than {MAX_WALK_DEPTH} levels deep")
                    stack.append((Path(entry.path), depth + 1))
                elif want(entry.name):
                    found.append(Path(entry.path))
                    if len(found) > max_files:
                        raise _walk_error(top, f"holds more than {max_files} matching files")
    return sorted(found)


def pack_files(path: Path) -> list[Path]:
    """The pack files a user-named path stands for: the file itself, or the `*.yaml` files of a directory
    (recursively, tests/ and *.test.yaml left out, bounded)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise PackError(f"{path}: no such rule pack file or directory") from None
    except OSError as e:
        raise PackError(f"{path}: cannot read: {e.strerror or e}") from None
    if stat.S_ISREG(mode):
        return [path]
    if stat.S_ISDIR(mode):
        files = _walk(path, recursive=True)
        if not files:
            raise PackError(f"{path}: no *.yaml rule packs in this directory")
        return files
    raise PackError(f"{path}: not a regular file or directory, expected a rule pack")


def vendor_pack_paths() -> list[Path]:
    """Pack files shipped in rules/ (tests excluded)."""
    from planner.resources import rules_dir

    return pack_files(rules_dir())


def site_pack_paths(rules: tuple[str, ...] = (), *, use_env: bool = True) -> list[Path]:
    """Site pack files in load order: site dir, $VLLM_PLANNER_RULES, then --rules (at most MAX_PACK_FILES)."""
    paths: list[Path] = []
    if use_env:
        site_dir = os.environ.get("VLLM_PLANNER_SITE_DIR")
        default_dir = Path(site_dir) if site_dir else Path.home() / ".config" / "vllm-planner" / "rules.d"
        if default_dir.is_dir():
            paths += _walk(default_dir, recursive=False)
        elif site_dir:
            raise PackError(f"$VLLM_PLANNER_SITE_DIR={site_dir}: no such directory")
        for entry in filter(None, os.environ.get("VLLM_PLANNER_RULES", "").split(os.pathsep)):
            paths += pack_files(Path(entry))
    for entry in rules:
        paths += pack_files(Path(entry))
    if len(paths) > MAX_PACK_FILES:
        raise PackError(f"{len(paths)} site rule pack files; at most {MAX_PACK_FILES} are read in one run")
    return paths


def load_packset(rules: tuple[str, ...] = (), *, use_env: bool = True, vendor_paths: list[Path] | None = None,
                 with_lines: bool = False) -> PackSet:
    """Load vendor + site packs and build the effective pack set.

    Plans use the fast loader (no line numbers) and reload with line tracking only to report an
    error; `with_lines` (the `rules` commands) keeps every rule's file:line for display. Packs from
    anywhere but the vendor paths must be `layer: site`.
    """
    vendor = vendor_pack_paths() if vendor_paths is None else vendor_paths
    site = site_pack_paths(rules, use_env=use_env)

    def read_all(fast: bool) -> list[Pack]:
        budget = ValueBudget()
        return ([read_pack_file(p, fast=fast) for p in vendor]
                + [read_pack_file(p, fast=fast, site=True, budget=budget) for p in site])

    if not with_lines:
        try:
            return build_packset(read_all(True))
        except PackError:
            pass
    return build_packset(read_all(False))


def _requires_problems(pack: Pack, loaded: list[LoadedPack]) -> list[str]:
    problems: list[str] = []
    for key, spec in pack.requires.items():
        if key != "planner":
            problems.append(f"{pack.source}: requires.{key}: unknown requirement (expected 'planner')")
            continue
        try:
            ok = Version(__version__) in SpecifierSet(spec, prereleases=True)
        except InvalidSpecifier:
            problems.append(f"{pack.source}: requires.planner: invalid version range {spec!r}")
            continue
        if not ok:
            problems.append(f"{pack.source}: requires.planner: needs planner {spec}, this is {__version__}")
    for at in pack.applies_to:
        target = next((p for p in loaded if p.name == at.pack), None)
        if target is None:
            problems.append(f"{pack.source}: applies_to: pack {at.pack!r} is not loaded")
            continue
        try:
            ok = Version(target.pack.version) in SpecifierSet(at.version)
        except InvalidSpecifier:
            problems.append(f"{pack.source}: applies_to: invalid version range {at.version!r}")
            continue
        if not ok:
            problems.append(f"{pack.source}: applies_to: {at.pack} {target.pack.version} is outside {at.version}")
    return problems


def build_packset(packs: list[Pack], *, broken: frozenset[str] = frozenset()) -> PackSet:
    """Layer validated packs (vendor packs first) into a PackSet, checking cross-pack references.

    Every problem is collected (PackProblemsError). `broken` names rules and params ("rule:ID",
    "param:NAME") of packs that failed to parse, already reported: references to them are not
    reported again (`rules lint` builds the set from the parts that did parse).
    """
    packs = sorted(packs, key=lambda p: 0 if p.layer == "vendor" else 1)  # stable: keeps order within a layer
    loaded: list[LoadedPack] = []
    decls: dict[str, tuple[ParamDecl, str]] = {}
    values: dict[str, tuple[Any, str]] = {}
    rules: dict[str, EffectiveRule] = {}
    names: dict[str, str] = {}
    overrides_log: list[dict[str, Any]] = []
    problems: list[str] = []
    for order, pack in enumerate(packs):
        if pack.name in names:
            problems.append(f"{pack.source}: pack name {pack.name!r} is already loaded from {names[pack.name]}")
            continue
        names[pack.name] = pack.source
        problems += _requires_problems(pack, loaded)
        for pname, decl in pack.params.items():
            if isinstance(decl, ParamDecl):
                if pname in decls:
                    problems.append(f"{pack.source}: params.{pname}: already declared by pack {decls[pname][1]!r}")
                    continue
                decls[pname] = (decl, pack.name)
                values[pname] = (decl.default, "default")
            else:
                where = f"{pack.source}:{pack.lines.get(f'params.{pname}', 0)}: params.{pname}"
                if pname not in decls:
                    if f"param:{pname}" not in broken:
                        problems.append(f"{where}: not declared by any vendor pack")
                    continue
                try:
                    check_param_value(decls[pname][0], decl)
                except ValueError as e:
                    problems.append(f"{where}: {e}")
                    continue
                values[pname] = (decl, pack.name)
        for k, ov in enumerate(pack.overrides):
            if ov.rule not in rules:
                if f"rule:{ov.rule}" not in broken:
                    problems.append(f"{pack.source}:{pack.lines.get(f'overrides[{k}]', 0)}: overrides[{k}]: unknown "
                                    f"rule {ov.rule!r} (no loaded pack defines it)")
                continue
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
                problems.append(f"{pack.source}:{pack.lines.get(f'rules[{i}]', 0)}: rules[{i}]: duplicate rule id "
                                f"{rule.id!r} (already defined in {prev.source}:{prev.line}); "
                                "disable it with an override and add a site.* rule instead")
                continue
            prefix = f"rules[{i}]."
            sub = {k[len(prefix):]: v for k, v in pack.lines.items() if k.startswith(prefix)}
            rules[rule.id] = EffectiveRule(rule=rule, pack=pack.name, layer=pack.layer, order=order,
                                           source=pack.source, line=pack.lines.get(f"rules[{i}]", 0),
                                           enabled=rule.enabled, priority=rule.priority, sublines=sub)
        loaded.append(LoadedPack(pack=pack, source=pack.source, sha256=_pack_sha(pack), order=order))
    params = {n: EffectiveParam(name=n, decl=decls[n][0], value=values[n][0], set_by=values[n][1]) for n in decls}
    packset = PackSet(packs=loaded, params=params, rules=list(rules.values()), overrides=overrides_log)
    for er in packset.rules:
        problems += rule_problems(er, params, broken=broken)
    if problems:
        raise PackProblemsError(list(dict.fromkeys(problems)))
    return packset


def _where(er: EffectiveRule, path: str) -> str:
    """`file:line: rule-id: path: message`, with the line of the condition or action when known."""
    location = path.split(":", 1)[0]
    line = er.sublines.get(location) or er.sublines.get(location.rsplit(".", 1)[0]) or er.line
    return f"{er.source}:{line}: {er.id}: {path}"


def rule_problems(er: EffectiveRule, params: dict[str, EffectiveParam], *,
                  broken: frozenset[str] = frozenset()) -> list[str]:
    """Every problem of one rule against the declared params and the facts schema: param references,
    fact refs, value types, verbs per stage, and the `{alias.field}` / `{param.NAME}` placeholders of
    its texts. Params and aliases named in `broken` failed to parse (already reported): references
    to them are not problems here."""
    rule = er.rule
    problems: list[str] = []
    broken_params = {b.split(":", 1)[1] for b in broken if b.startswith("param:")}
    broken_aliases = {b.rsplit(".", 1)[1] for b in broken if b.startswith(f"alias:{rule.id}.")}

    def bad(path: str) -> None:
        problems.append(_where(er, path))

    def unknown_param(name: str) -> bool:
        return name not in params and name not in broken_params

    aliases = {p.alias: p.fact for p in rule.when}
    seen_aliases: list[str] = []
    for pat in rule.when:
        for cond in pat.conditions:
            path = f"when.{pat.alias}.{cond.prop}"
            kind = field_kind(pat.fact, cond.prop)
            val = cond.value
            if isinstance(val, ParamRef):
                if val.param not in params:
                    if unknown_param(val.param):
                        bad(f"{path}: undeclared param {val.param!r}")
                    continue
                if params[val.param].decl.type == "map":
                    bad(f"{path}: param {val.param!r} is a map (a table the planner reads), not a value to compare")
                    continue
                val = params[val.param].value
            if isinstance(val, FactRef):
                if val.alias in broken_aliases:
                    continue
                if val.alias not in aliases:
                    bad(f"{path}: ref to unknown alias {val.alias!r}")
                elif val.alias == pat.alias or val.alias not in seen_aliases:
                    bad(f"{path}: ref {val.ref!r} must name an alias listed earlier in 'when'")
                elif val.prop not in FACT_SCHEMA[aliases[val.alias]] and val.prop != "key":
                    bad(f"{path}: unknown field {val.prop!r} of fact {aliases[val.alias]!r}")
                continue
            problem = _cond_type_problem(cond.op, kind, val)
            if problem:
                bad(f"{path}: {problem}")
        seen_aliases.append(pat.alias)
    if rule.stage == "baseline" and {"candidate", "option"} & set(aliases.values()):
        bad("when: baseline rules cannot match candidates or options (they are built later)")
    for i, act in enumerate(rule.then):
        path = f"then[{i}]"
        for v in (act.value, act.factor, act.score):
            if isinstance(v, ParamRef) and unknown_param(v.param):
                bad(f"{path}: undeclared param {v.param!r}")
            if isinstance(v, ParamRef) and v.param in params and params[v.param].decl.type == "map":
                bad(f"{path}: param {v.param!r} is a map (a table the planner reads), not a value")
            if isinstance(v, FactRef) and v.alias not in broken_aliases:
                if v.alias not in aliases:
                    bad(f"{path}: ref to unknown alias {v.alias!r}")
                elif v.prop not in FACT_SCHEMA[aliases[v.alias]]:
                    bad(f"{path}: unknown field {v.prop!r} of fact {aliases[v.alias]!r}")
        if act.verb == "recommend" and not (isinstance(act.value, ParamRef) and act.value.param not in params):
            literal = params[act.value.param].value if isinstance(act.value, ParamRef) else act.value
            if not isinstance(literal, FactRef):
                problem = check_decision_value(act.target, literal)
                if problem:
                    bad(f"{path}: recommend {act.target}: {problem}")
        if act.verb == "set":
            if act.target not in params:
                if unknown_param(act.target):
                    bad(f"{path}: set: undeclared param {act.target!r}")
            elif isinstance(act.value, (bool, int, float, str)):
                try:
                    check_param_value(params[act.target].decl, act.value)
                except ValueError as e:
                    bad(f"{path}: set {act.target}: {e}")
            if rule.stage != "baseline":
                bad(f"{path}: 'set' belongs in the baseline stage")
        if act.verb == "scale":
            if act.target not in SCALABLE:
                bad(f"{path}: scale: unknown quantity {act.target!r} (expected {', '.join(SCALABLE)})")
            if rule.stage != "baseline":
                bad(f"{path}: 'scale' belongs in the baseline stage")
        if act.verb in ("forbid", "prefer"):
            if act.target not in aliases.values() and not broken_aliases:
                bad(f"{path}: '{act.verb}: {act.target}' needs a {act.target} alias in 'when'")
            if rule.stage != "sizing":
                bad(f"{path}: '{act.verb}' belongs in the sizing stage (candidates are dropped and scored before "
                    "settings are recommended)")
            if act.verb == "prefer" and isinstance(act.score, (bool, str)):
                bad(f"{path}: prefer score must be a number, got {act.score!r}")
        for key, text in _texts(act, rule.description):
            for problem in placeholder_problems(text, aliases, params, broken_params | broken_aliases):
                bad(f"{path}.{key}: {problem}" if key != "description" else f"description: {problem}")
    return problems


def _texts(act: Action, description: str) -> list[tuple[str, str]]:
    """The texts an action renders with placeholders: its reason or message (the rule's description
    stands in for a missing reason of set, recommend and prefer)."""
    if act.verb == "warn":
        return [("message", act.message or "")]
    if act.reason is not None:
        return [("reason", act.reason)]
    return [("description", description)] if act.verb in ("set", "recommend", "prefer") else []


_FACT_META_FIELDS = ("type", "id", "key")  # every normalised fact carries these


def placeholder_problems(text: str, aliases: dict[str, str], params: dict[str, EffectiveParam],
                         skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """What is wrong with each `{alias.field:spec}` / `{param.NAME:spec}` placeholder of `text`: an alias
    the rule's `when` does not bind, a field its fact type does not have, an undeclared param, a format
    spec the renderer refuses or that does not apply to the field's type. The renderer leaves such a
    placeholder as written, so a typo would otherwise reach users verbatim. Aliases and params named
    in `skip` failed to parse and are not checked."""
    from planner.suggest import closest, did_you_mean

    problems: list[str] = []
    for m in PLACEHOLDER.finditer(text):
        scope, name, spec = m.group(1), m.group(2), m.group(3)
        shown = f"unknown placeholder {m.group(0)!r}"
        if (name if scope == "param" else scope) in skip:
            continue
        if scope == "param":
            if name not in params:
                hint = did_you_mean(closest(name, [(p, p, f"param.{p}") for p in params]))
                problems.append(f"{shown}: undeclared param {name!r}{hint}")
                continue
            decl = params[name].decl
            sample = _SAMPLES[decl.type]
        elif scope not in aliases:
            known = ", ".join(sorted(aliases))
            problems.append(f"{shown}: {scope!r} is neither an alias in this rule's 'when' ({known}) nor 'param'")
            continue
        else:
            fact = aliases[scope]
            if name not in FACT_SCHEMA[fact] and name not in _FACT_META_FIELDS:
                hint = did_you_mean(closest(name, [(f, f, f"{scope}.{f}") for f in FACT_SCHEMA[fact]]))
                problems.append(f"{shown}: fact {fact!r} has no field {name!r}{hint}")
                continue
            sample = _SAMPLES[field_kind(fact, name) if name in FACT_SCHEMA[fact] else "str"]
        if spec is None:
            continue
        if not SAFE_SPEC.match(spec):
            problems.append(f"placeholder {m.group(0)!r}: format spec {spec!r} is not allowed (at most 3-digit "
                            "width and precision)")
            continue
        try:
            format(sample, spec)
        except (ValueError, TypeError):
            problems.append(f"placeholder {m.group(0)!r}: format spec {spec!r} does not apply to a "
                            f"{type(sample).__name__} value")
    return problems


_SAMPLES: dict[str, Any] = {"float": 0.5, "int": 1, "bool": True, "str": "x", "map": {}}


def _cond_type_problem(op: str, kind: str, val: Any) -> str | None:
    numeric = kind in ("int", "float")
    if op in ("gt", "gte", "lt", "lte") and not numeric:
        return f"'{op}' needs a numeric field, this one is {kind}"
    if op == "exists":
        return None
    items = val if isinstance(val, list) else [val]
    for item in items:
        ok = (
            (kind == "bool" and isinstance(item, bool))
            or (kind == "str" and isinstance(item, str))
            or (numeric and isinstance(item, (int, float)) and not isinstance(item, bool))
        )
        if not ok:
            return f"{item!r} does not match the field's type ({kind})"
    return None
