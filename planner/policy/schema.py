"""Rule-pack schema 1: pydantic models of a pack file, validated before anything reaches the engine.

Pure: no I/O. `parse_pack(raw, source)` takes the round-trip-loaded YAML (ruamel nodes keep line
numbers) and returns a `Pack`, or raises PackError with one line:
``site.yaml:14: rules[2].then[0]: unknown verb 'explode' (expected set|scale|recommend|forbid|prefer|warn)``.

Format (see ARCHITECTURE.md "Rule packs"):
  schema: 1            file-format version (an unknown major is refused)
  name, version        pack name and semver content version
  layer                vendor | site
  requires             {planner: ">=0.1"}           (optional)
  applies_to           [{pack: core, version: ">=1,<2"}]  (site packs, optional)
  params               vendor: declarations; site: new values for declared params
  overrides            site only: [{rule, enabled?, priority?, reason}]
  rules                [{id, description, stage, priority, when, then, tags?}]
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from planner.errors import PackError, PackProblemsError
from planner.policy.facts import FACT_SCHEMA, FACT_SCHEMA_VERSION

SCHEMA_VERSION = 1
STAGES = ("baseline", "sizing", "recommend")
VERBS = ("set", "scale", "recommend", "forbid", "prefer", "warn")
SUBJECTS = ("candidate", "option")  # fact types a forbid/prefer drops or scores
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists")

# Stable decision keys a `recommend` may target (ARCHITECTURE.md).
DECISION_KEYS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "enable_expert_parallel",
    "quantization",
    "kv_cache_dtype",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "enforce_eager",
    "block_size",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "capacity_option",  # `capacity`: the option (GPU type x replica layout) to deploy, by its key
)

# `--quantization` values vLLM has accepted (vllm/model_executor/layers/quantization/__init__.py
# QuantizationMethods, union over the versions the planner targets), and "none" (facts' spelling of no method).
QUANTIZATION_METHODS = (
    "none", "fp8", "awq", "gptq", "compressed-tensors", "modelopt", "modelopt_fp4", "bitsandbytes", "mxfp4",
    "awq_marlin", "gptq_marlin", "gptq_marlin_24", "gptq_bitblas", "marlin", "bitblas", "fbgemm_fp8", "ptpc_fp8",
    "fp_quant", "gguf", "hqq", "experts_int8", "moe_wna16", "quark", "torchao", "auto-round", "inc", "rtn",
    "petit_nvfp4", "deepspeedfp", "tpu_int8", "ipex", "aqlm", "qqq", "neuron_quant", "nvfp4", "squeezellm",
)

_POSITIVE_INT_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "max_model_len",
                      "max_num_seqs", "max_num_batched_tokens", "block_size")
_BOOL_KEYS = ("enforce_eager", "enable_prefix_caching", "enable_chunked_prefill", "enable_expert_parallel")


def check_decision_value(key: str, value: object) -> str | None:
    """None when `value` is a valid vLLM value for decision `key`, else what is wrong with it."""
    from planner.memory import KV_DTYPES

    if key in _POSITIVE_INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000_000:
            return f"expected a positive integer, got {value!r}"
    elif key == "gpu_memory_utilization":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            return f"expected a fraction in (0, 1], got {value!r}"
    elif key == "kv_cache_dtype":
        if value not in KV_DTYPES:
            return f"expected one of {', '.join(KV_DTYPES)}, got {value!r}"
    elif key in _BOOL_KEYS:
        if not isinstance(value, bool):
            return f"expected true or false, got {value!r}"
    elif key == "quantization":
        if not isinstance(value, str) or value not in QUANTIZATION_METHODS:
            return f"expected none or a vLLM quantization method ({', '.join(QUANTIZATION_METHODS[:8])}, ...), " \
                   f"got {value!r}"
    elif key == "capacity_option" and (not isinstance(value, str) or not value):
        return f"expected an option key (e.g. {{ref: opt.key}}), got {value!r}"
    return None


# `{alias.field:spec}` / `{param.NAME:spec}` in reasons and messages (filled by the resolver, checked at load)
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)(?::([^{}]*))?\}")
# a format spec with at most 3-digit width and precision: `{x:>999999999}` in an untrusted pack must not
# build a gigabyte string
SAFE_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?[#0]?\d{0,3}[,_]?(?:\.\d{1,3})?[bcdeEfFgGnosxX%]?\Z")

_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")
_PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_]*$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")

Scalar = bool | int | float | str


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be blank")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamRef(_Strict):
    """`{param: NAME}`: substituted with the effective parameter value."""

    param: str


class FactRef(_Strict):
    """`{ref: alias.prop}`: the value of a property of a fact bound in the same rule."""

    ref: str

    @field_validator("ref")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*", v):
            raise ValueError(f"ref must look like 'alias.prop', got {v!r}")
        return v

    @property
    def alias(self) -> str:
        return self.ref.split(".", 1)[0]

    @property
    def prop(self) -> str:
        return self.ref.split(".", 1)[1]


Value = Scalar | ParamRef | FactRef
CondValue = Scalar | list[Scalar] | ParamRef | FactRef


class Condition(_Strict):
    """One test on one fact property: `prop op value`."""

    prop: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"]
    value: CondValue


class Pattern(_Strict):
    """One `when` alias: a fact type and the conditions its properties must meet."""

    alias: str
    fact: str
    conditions: tuple[Condition, ...] = ()


class ParamDecl(_Strict):
    """A vendor-declared knob: type, default, bounds, unit and provenance."""

    type: Literal["float", "int", "bool", "str", "map"]
    default: Scalar | dict[str, float]  # map: a table of names to numbers (e.g. catalog id -> price)
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None
    unit: str | None = None
    description: str = Field(min_length=1)
    source: str | None = None

    _description_not_blank = field_validator("description")(_not_blank)

    @model_validator(mode="after")
    def _default_fits(self) -> ParamDecl:
        check_param_value(self, self.default)
        return self


class Override(_Strict):
    """A site's change to a vendor rule's enabled flag or priority, with the reason required."""

    rule: str
    enabled: bool | None = None
    priority: int | None = Field(default=None, ge=0, le=1000)
    reason: str = Field(min_length=1)

    _reason_not_blank = field_validator("reason")(_not_blank)

    @model_validator(mode="after")
    def _changes_something(self) -> Override:
        if self.enabled is None and self.priority is None:
            raise ValueError("an override must change 'enabled' or 'priority'")
        return self


class Action(_Strict):
    """One `then` entry; exactly one verb key."""

    verb: Literal["set", "scale", "recommend", "forbid", "prefer", "warn"]
    target: str  # param name | quantity | decision key | "candidate" | "option" | warning code
    value: Value | None = None  # set / recommend
    factor: Value | None = None  # scale
    score: Value | None = None  # prefer
    reason: str | None = None  # recommend / forbid / prefer
    message: str | None = None  # warn


class Rule(_Strict):
    """A rule: when every pattern matches (a conjunction), apply the actions."""

    id: str
    description: str = Field(min_length=1)
    stage: Literal["baseline", "sizing", "recommend"]
    priority: int = Field(default=500, ge=0, le=1000)
    enabled: bool = True
    tags: tuple[str, ...] = ()
    source: str | None = Field(default=None, min_length=1)  # what the rule mirrors (vLLM file, doc, measurement)
    when: tuple[Pattern, ...] = Field(min_length=1)
    then: tuple[Action, ...] = Field(min_length=1)

    _description_not_blank = field_validator("description")(_not_blank)


class AppliesTo(_Strict):
    pack: str
    version: str


class Pack(_Strict):
    """A validated pack file."""

    schema_: int = Field(alias="schema")
    name: str
    version: str
    layer: Literal["vendor", "site"]
    description: str | None = None
    requires: dict[str, str] = Field(default_factory=dict)
    applies_to: tuple[AppliesTo, ...] = ()
    params: dict[str, ParamDecl | Scalar | dict[str, float]] = Field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    rules: tuple[Rule, ...] = ()
    source: str = ""
    lines: dict[str, int] = Field(default_factory=dict)  # "rules[2]" -> line, for error messages

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not _SEMVER.match(v):
            raise ValueError(f"version must be semver MAJOR.MINOR.PATCH, got {v!r}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", v):
            raise ValueError(f"name must be lowercase letters, digits, '.', '_' or '-', got {v!r}")
        return v


def check_param_value(decl: ParamDecl, value: object) -> None:
    """Raise ValueError unless `value` has the declared type and lies within the bounds (a map's numbers each)."""
    kind = decl.type
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError(f"expected a map of names to numbers, got {value!r}")
        for name, item in value.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"map keys must be non-empty names, got {name!r}")
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ValueError(f"{name}: expected a number, got {item!r}")
            try:
                check_param_value(decl.model_copy(update={"type": "float", "choices": None}), item)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return
    ok = (
        (kind == "bool" and isinstance(value, bool))
        or (kind == "int" and isinstance(value, int) and not isinstance(value, bool))
        or (kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind == "str" and isinstance(value, str))
    )
    if not ok:
        raise ValueError(f"expected {kind}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {value!r}")
        if decl.min is not None and value < decl.min:
            raise ValueError(f"{value!r} is below the minimum {decl.min}")
        if decl.max is not None and value > decl.max:
            raise ValueError(f"{value!r} is above the maximum {decl.max}")
    if decl.choices is not None and value not in decl.choices:
        raise ValueError(f"{value!r} is not one of {decl.choices}")


# ---------------------------------------------------------------------------------------------
# Raw YAML -> model, with file:line errors


class _Where:
    """Tracks the path inside the document for error messages."""

    def __init__(self, source: str, doc: Any) -> None:
        self.source = source
        self.doc = doc
        self.rule_ids: dict[int, str] = {}  # rules[i] -> its id, once read: messages name the rule by id

    def line(self, path: tuple[Any, ...]) -> int | None:
        from planner.yamlio import line_of

        node, line = self.doc, line_of(self.doc)
        for part in path:
            try:
                child = node[part]
            except (KeyError, IndexError, TypeError):
                break
            found = line_of(node, part) if isinstance(node, dict) else None
            if found is None and isinstance(node, list):
                lc = getattr(node, "lc", None)
                try:
                    found = int(lc.item(part)[0]) + 1 if lc is not None else None
                except (KeyError, TypeError, IndexError, AttributeError):
                    found = None
            line = found or line
            node = child
        return line

    def fail(self, path: tuple[Any, ...], message: str) -> PackError:
        """`file:line: where: message`; inside a rule whose id is known, where is `rule-id: field`."""
        line = self.line(path)
        if len(path) >= 2 and path[0] == "rules" and path[1] in self.rule_ids:
            rest = _fmt_path(path[2:])
            where = self.rule_ids[path[1]] + (f": {rest}" if rest else "")
        else:
            where = _fmt_path(path)
        prefix = f"{self.source}:{line}" if line else self.source
        return PackError(f"{prefix}: {where + ': ' if where else ''}{message}")


class _Problems:
    """Collects one-line problems so that a pack's every problem is reported in one run."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, err: PackError) -> None:
        for line in err.problems if isinstance(err, PackProblemsError) else [str(err)]:
            if line not in self.lines:
                self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)


def _fmt_path(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _parse_value(raw: Any, w: _Where, path: tuple[Any, ...], *, allow_list: bool = False) -> Any:
    from planner.yamlio import to_plain

    plain = to_plain(raw)
    if isinstance(plain, dict):
        if set(plain) == {"param"}:
            if not isinstance(plain["param"], str):
                raise w.fail(path, "{param: NAME} needs a string name")
            return ParamRef(param=plain["param"])
        if set(plain) == {"ref"}:
            try:
                return FactRef(ref=plain["ref"])
            except ValidationError as e:
                raise w.fail(path, e.errors()[0]["msg"].removeprefix("Value error, ")) from None
        raise w.fail(path, f"expected a literal, {{param: NAME}} or {{ref: alias.prop}}, got {plain!r}")
    if isinstance(plain, list):
        if not allow_list:
            raise w.fail(path, f"a list is only allowed with 'in', got {plain!r}")
        for i, item in enumerate(plain):
            if not isinstance(item, (bool, int, float, str)):
                raise w.fail((*path, i), f"'in' lists hold literals only, got {item!r}")
        return plain
    if plain is None:
        raise w.fail(path, "null is not a valid value (facts never hold null; use exists: false)")
    if isinstance(plain, float) and plain != plain:
        raise w.fail(path, "NaN is not a valid value")
    return plain


def _parse_pattern(alias: str, raw: Any, w: _Where, path: tuple[Any, ...]) -> Pattern:
    if not _ALIAS.match(str(alias)):
        raise w.fail(path, f"alias {alias!r} must be lowercase letters, digits and '_'")
    if not isinstance(raw, dict):
        raise w.fail(path, f"expected a mapping {{fact: TYPE, prop: condition}}, got {raw!r}")
    if "fact" not in raw:
        raise w.fail(path, "missing 'fact: TYPE'")
    fact = raw["fact"]
    if fact not in FACT_SCHEMA:
        known = "|".join(sorted(FACT_SCHEMA))
        raise w.fail((*path, "fact"), f"unknown fact type {fact!r} (facts schema {FACT_SCHEMA_VERSION}: {known})")
    conds: list[Condition] = []
    problems = _Problems()
    for prop, cond in raw.items():
        if prop == "fact":
            continue
        ppath = (*path, prop)
        if prop not in FACT_SCHEMA[fact]:
            problems.add(w.fail(ppath, f"unknown field {prop!r} of fact {fact!r} "
                                       f"(known: {', '.join(FACT_SCHEMA[fact])})"))
            continue
        if isinstance(cond, dict) and not set(cond) <= {"param", "ref"}:  # {op: value, ...}
            tests = [(op, val, (*ppath, op)) for op, val in cond.items()]
        else:  # a bare value means eq
            tests = [("eq", cond, ppath)]
        for op, val, opath in tests:
            try:
                conds.append(_parse_condition(str(prop), op, val, w, opath))
            except PackError as e:
                problems.add(e)
    pattern = Pattern(alias=str(alias), fact=str(fact), conditions=tuple(conds))
    if problems:  # the pattern without its bad conditions goes with the error (for lint's further checks)
        raise PackProblemsError(problems.lines, partial=pattern)
    return pattern


def _parse_condition(prop: str, op: Any, val: Any, w: _Where, path: tuple[Any, ...]) -> Condition:
    if op not in OPERATORS:
        raise w.fail(path, f"unknown operator {op!r} (expected {' '.join(OPERATORS)})")
    value = _parse_value(val, w, path, allow_list=(op == "in"))
    if op == "in" and not isinstance(value, list):
        raise w.fail(path, "'in' needs a list of literals")
    if op == "exists" and not isinstance(value, bool):
        raise w.fail(path, "'exists' takes true or false")
    if isinstance(value, FactRef) and op != "eq":
        raise w.fail(path, f"relational join {op} {{ref: {value.ref}}} is not allowed; only eq joins "
                           "(durable-rules#381 crashes on relational joins)")
    return Condition(prop=prop, op=op, value=value)


_VERB_FIELDS = {
    "set": {"value"},
    "scale": {"factor"},
    "recommend": {"value", "reason"},
    "forbid": {"reason"},
    "prefer": {"score", "reason"},
    "warn": {"message"},
}
_REQUIRED = {"set": {"value"}, "scale": {"factor"}, "recommend": {"value"}, "forbid": {"reason"},
             "prefer": {"score"}, "warn": {"message"}}


def _parse_action(raw: Any, w: _Where, path: tuple[Any, ...]) -> Action:
    if not isinstance(raw, dict):
        raise w.fail(path, f"expected a mapping with one verb ({'|'.join(VERBS)}), got {raw!r}")
    verbs = [k for k in raw if k in VERBS]
    if len(verbs) != 1:
        unknown = [k for k in raw if k not in VERBS and k not in {"value", "factor", "score", "reason", "message"}]
        if unknown:
            raise w.fail(path, f"unknown verb {unknown[0]!r} (expected {'|'.join(VERBS)})")
        raise w.fail(path, f"each action needs exactly one verb key: {'|'.join(VERBS)}")
    verb = verbs[0]
    extra = set(raw) - {verb} - _VERB_FIELDS[verb]
    if extra:
        raise w.fail((*path, sorted(extra)[0]), f"unexpected key {sorted(extra)[0]!r} for '{verb}'")
    missing = _REQUIRED[verb] - set(raw)
    if missing:
        raise w.fail(path, f"'{verb}' needs '{sorted(missing)[0]}'")
    target = raw[verb]
    if not isinstance(target, str):
        raise w.fail((*path, verb), f"expected a name, got {target!r}")
    kwargs: dict[str, Any] = {"verb": verb, "target": target}
    for key in ("value", "factor", "score"):
        if key in raw:
            kwargs[key] = _parse_value(raw[key], w, (*path, key))
    for key in ("reason", "message"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key].strip():
                raise w.fail((*path, key), f"{key} must be a non-empty string")
            kwargs[key] = str(raw[key])
    if verb == "recommend" and target not in DECISION_KEYS:
        raise w.fail((*path, verb), f"unknown decision key {target!r} (expected one of {', '.join(DECISION_KEYS)})")
    if verb in ("forbid", "prefer") and target not in SUBJECTS:
        raise w.fail((*path, verb), f"'{verb}' applies to 'candidate' (plan) or 'option' (capacity), got {target!r}")
    return Action(**kwargs)


def _parse_rule(raw: Any, w: _Where, path: tuple[Any, ...], layer: str) -> Rule:
    """One rule; every problem in it is reported (PackProblemsError), each naming the rule id and field."""
    if not isinstance(raw, dict):
        raise w.fail(path, f"expected a rule mapping, got {raw!r}")
    problems = _Problems()
    rid = raw.get("id")
    id_ok = isinstance(rid, str) and bool(_RULE_ID.match(rid))
    if isinstance(rid, str) and id_ok:
        w.rule_ids[path[-1]] = rid
        if layer == "site" and not rid.startswith("site."):
            problems.add(w.fail((*path, "id"), f"site rules must start with 'site.', got {rid!r}"))
            id_ok = False
        if layer == "vendor" and rid.startswith("site."):
            problems.add(w.fail((*path, "id"), f"'site.' ids are reserved for site packs, got {rid!r}"))
            id_ok = False
    else:
        problems.add(w.fail((*path, "id"), f"rule id must be dotted lowercase words like 'rec.kv-dtype.fp8', "
                                           f"got {rid!r}"))
    known = {"id", "description", "source", "stage", "priority", "enabled", "tags", "when", "then"}
    for key in raw:
        if key not in known:
            problems.add(w.fail((*path, key), f"unknown rule key {key!r} (expected {', '.join(sorted(known))})"))
    patterns: list[Pattern] = []
    broken_aliases: set[str] = set()
    when = raw.get("when")
    if not isinstance(when, dict) or not when:
        problems.add(w.fail((*path, "when"), "needs at least one alias: {fact: TYPE, ...}"))
    else:
        for alias, pat in when.items():
            try:
                patterns.append(_parse_pattern(alias, pat, w, (*path, "when", alias)))
            except PackError as e:
                problems.add(e)
                if isinstance(e, PackProblemsError) and isinstance(e.partial, Pattern):
                    patterns.append(e.partial)
                else:
                    broken_aliases.add(str(alias))
    if isinstance(when, dict):
        for e in _join_problems(when, w, (*path, "when")):
            problems.add(e)
    actions: list[Action] = []
    then = raw.get("then")
    if not isinstance(then, list) or not then:
        problems.add(w.fail((*path, "then"), "needs a non-empty list of actions"))
    else:
        for i, act in enumerate(then):
            try:
                actions.append(_parse_action(act, w, (*path, "then", i)))
            except PackError as e:
                problems.add(e)
    data = {k: raw[k] for k in ("description", "source", "stage", "priority", "enabled", "tags") if k in raw}
    from planner.yamlio import to_plain

    try:
        rule = Rule(id=rid if isinstance(rid, str) else "", when=tuple(patterns), then=tuple(actions),
                    **to_plain(data))
    except ValidationError as e:
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            if field in ("id", "when", "then"):  # reported above
                continue
            problems.add(w.fail((*path, field) if field else path, err["msg"]))
        rule = None
    if problems or rule is None:
        # What did parse goes with the error, so that lint also checks its references; the aliases
        # that did not parse are named, so that references to them are not reported again.
        salvaged = rule if rule is not None and id_ok else None
        raise PackProblemsError(problems.lines or [str(w.fail(path, "invalid rule"))], partial=salvaged,
                                broken=frozenset(f"alias:{rid}.{a}" for a in broken_aliases))
    return rule


def _join_problems(when: dict[Any, Any], w: _Where, path: tuple[Any, ...]) -> list[PackError]:
    """A rule is tried on every combination of distinct facts, one per alias: bound the aliases, so that no
    rule's combinations can grow beyond what either evaluator finishes (the same limit for both)."""
    out = []
    if len(when) > MAX_ALIASES_PER_RULE:
        out.append(w.fail(path, f"{len(when)} aliases; a rule may match at most {MAX_ALIASES_PER_RULE} facts "
                                "(every combination of them is tried)"))
    per_fact: dict[str, int] = {}
    for pat in when.values():
        fact = pat.get("fact") if isinstance(pat, dict) else None
        if isinstance(fact, str):
            per_fact[fact] = per_fact.get(fact, 0) + 1
    for fact, n in sorted(per_fact.items()):
        if n > MAX_ALIASES_PER_FACT:
            out.append(w.fail(path, f"{n} aliases of '{fact}' facts; a rule may match at most "
                                    f"{MAX_ALIASES_PER_FACT} facts of one type (every combination of them is tried)"))
    return out


# Characters no pack text may hold: C0 controls but tab and newline, DEL, the C1 controls (terminal escapes
# start with ESC or CSI 0x9b), and the bidirectional marks, overrides and isolates and line separators
# that reorder or hide what a reader sees. A pack's effect must always be visible.
_HIDDEN_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e"
                           "\u2066-\u2069]")


def hidden_char(text: str) -> str | None:
    """The first control or bidirectional-formatting character of `text`, as U+XXXX, or None."""
    m = _HIDDEN_CHARS.search(text)
    return f"U+{ord(m.group(0)):04X}" if m else None


def _text_problems(doc: Any, w: _Where) -> list[PackError]:
    """Every string of the pack (keys included) holding a control character, each with its place."""
    out: list[PackError] = []
    seen: set[int] = set()
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack and len(out) < 20:
        node, path = stack.pop()
        if isinstance(node, str):
            bad = hidden_char(node)
            if bad:
                out.append(w.fail(path, f"holds the control character {bad}; pack text must be printable "
                                        "(it reaches terminals, logs and the audit)"))
            continue
        if not isinstance(node, (dict, list)) or id(node) in seen:
            continue
        seen.add(id(node))
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in reversed(items):
            if isinstance(node, dict) and isinstance(key, str) and hidden_char(key):
                out.append(w.fail(path, f"key {key!r} holds the control character {hidden_char(key)}; pack "
                                        "text must be printable"))
                continue
            stack.append((value, (*path, key)))
    return out


MAX_ALIASES_PER_RULE = 6  # one per fact type; the core pack uses at most 4
MAX_ALIASES_PER_FACT = 2  # a pairwise comparison; the core pack uses 1
MAX_RULES_PER_PACK = 2000  # the core pack holds ~50; a bound keeps hostile packs from multiplying work


def parse_pack(doc: Any, source: str) -> Pack:
    """Validate one loaded pack document; errors are `source:line: where: message`.

    Every problem is reported, not only the first: a PackProblemsError lists them all, with the pack
    built from what did parse (`partial`) and the names of what did not (`broken`), for `rules lint`.
    """
    from planner.yamlio import to_plain

    w = _Where(source, doc)
    if not isinstance(doc, dict):
        raise w.fail((), "a rule pack must be a mapping with schema, name, version, layer")
    problems = _Problems()
    broken: set[str] = set()
    known = {"schema", "name", "version", "layer", "description", "requires", "applies_to", "params",
             "overrides", "rules"}
    for key in doc:
        if key not in known:
            problems.add(w.fail((key,), f"unknown top-level key {key!r} (expected {', '.join(sorted(known))})"))
    schema = doc.get("schema")
    if schema != SCHEMA_VERSION:  # nothing else can be read safely
        problems.add(w.fail(("schema",), f"unsupported pack schema {schema!r} "
                                         f"(this planner reads schema {SCHEMA_VERSION})"))
        raise PackProblemsError(problems.lines)
    layer = doc.get("layer")
    if layer not in ("vendor", "site"):  # rules and params are read differently per layer
        problems.add(w.fail(("layer",), f"layer must be 'vendor' or 'site', got {layer!r}"))
        raise PackProblemsError(problems.lines)
    rules_raw = doc.get("rules") or []
    if not isinstance(rules_raw, list):
        problems.add(w.fail(("rules",), "rules must be a list"))
        rules_raw = []
    if len(rules_raw) > MAX_RULES_PER_PACK:
        problems.add(w.fail(("rules",), f"{len(rules_raw)} rules is more than the {MAX_RULES_PER_PACK} a pack "
                                        "may hold"))
        raise PackProblemsError(problems.lines)
    parsed: list[Rule] = []
    kept: list[int] = []  # index in rules_raw of each parsed rule
    seen: dict[str, int] = {}
    for i, r in enumerate(rules_raw):
        try:
            rule = _parse_rule(r, w, ("rules", i), layer)
        except PackError as e:
            problems.add(e)
            if isinstance(e, PackProblemsError) and isinstance(e.partial, Rule):
                rule = e.partial  # kept in the partial pack (lint checks its references), never planned with
                broken |= e.broken
            else:
                rid = r.get("id") if isinstance(r, dict) else None
                if isinstance(rid, str):
                    broken.add(f"rule:{rid}")
                continue
        if rule.id in seen:
            problems.add(w.fail(("rules", i, "id"), f"duplicate rule id {rule.id!r} (first at rules[{seen[rule.id]}])"))
            continue
        seen[rule.id] = i
        parsed.append(rule)
        kept.append(i)
    for e in _text_problems(doc, w):  # after the rules, so that messages name a rule by its id
        problems.add(e)
    lines: dict[str, int] = {}
    for n, i in enumerate(kept):  # locations of the rules kept, for errors found after parsing
        raw_rule = rules_raw[i]
        lines[f"rules[{n}]"] = w.line(("rules", i)) or 0
        for j, act in enumerate(raw_rule.get("then") or []):
            lines[f"rules[{n}].then[{j}]"] = w.line(("rules", i, "then", j)) or 0
            for key in ("reason", "message"):
                if key in act:
                    lines[f"rules[{n}].then[{j}].{key}"] = w.line(("rules", i, "then", j, key)) or 0
        for alias, pat in (raw_rule.get("when") or {}).items():
            for prop in pat if isinstance(pat, dict) else ():
                lines[f"rules[{n}].when.{alias}.{prop}"] = w.line(("rules", i, "when", alias, prop)) or 0
    params_raw = doc.get("params") or {}
    if not isinstance(params_raw, dict):
        problems.add(w.fail(("params",), "params must be a mapping"))
        params_raw = {}
    params: dict[str, ParamDecl | Scalar] = {}
    for name, decl in params_raw.items():
        try:
            params[str(name)] = _parse_param(str(name), decl, w, layer)
        except PackError as e:
            problems.add(e)
            broken.add(f"param:{name}")
            continue
        lines[f"params.{name}"] = w.line(("params", name)) or 0
    overrides_raw = doc.get("overrides") or []
    if overrides_raw and layer != "site":
        problems.add(w.fail(("overrides",), "only site packs may override rules"))
        overrides_raw = []
    if not isinstance(overrides_raw, list):
        problems.add(w.fail(("overrides",), "overrides must be a list"))
        overrides_raw = []
    overrides = []
    for i, o in enumerate(overrides_raw):
        try:
            ov = Override.model_validate(to_plain(o))
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"])
                problems.add(w.fail(("overrides", i), f"{loc + ': ' if loc else ''}"
                                                      f"{err['msg'].removeprefix('Value error, ')}"))
            continue
        lines[f"overrides[{len(overrides)}]"] = w.line(("overrides", i)) or 0
        overrides.append(ov)
    top = {k: to_plain(doc[k]) for k in ("schema", "name", "version", "layer", "description", "requires",
                                          "applies_to") if k in doc and doc[k] is not None}
    pack: Pack | None = None
    if isinstance(top.get("version"), (int, float)):
        problems.add(w.fail(("version",), "version must be a quoted semver string like \"1.0.0\", "
                                          f"got {top['version']!r}"))
    else:
        try:
            pack = Pack(**top, params=params, overrides=tuple(overrides), rules=tuple(parsed), source=source,
                        lines=lines)
        except ValidationError as e:
            for err in e.errors():
                key = str(err["loc"][0]) if err["loc"] else ""
                problems.add(w.fail((key,) if key else (), err["msg"].removeprefix("Value error, ")))
    if problems:
        raise PackProblemsError(problems.lines, partial=pack, broken=frozenset(broken))
    assert pack is not None
    return pack


def _parse_param(name: str, decl: Any, w: _Where, layer: str) -> ParamDecl | Scalar:
    """A vendor pack's declaration or a site pack's value for one param."""
    from planner.yamlio import to_plain

    if not _PARAM_NAME.match(name):
        raise w.fail(("params", name), f"param name {name!r} must be lowercase letters, digits and '_'")
    if layer == "site":
        value = to_plain(decl)
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            return value  # a map param's table (its numbers are checked against the declaration)
        if not isinstance(value, (bool, int, float, str)):
            raise w.fail(("params", name), f"site packs set params to a literal value or a map of names to "
                                           f"numbers, got {value!r}")
        return value
    if not isinstance(decl, dict):
        raise w.fail(("params", name), "vendor packs declare params as {type, default, description, ...}")
    try:
        return ParamDecl.model_validate(to_plain(decl))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise w.fail(("params", name, *err["loc"][:1]), f"{loc + ': ' if loc else ''}"
                     f"{err['msg'].removeprefix('Value error, ')}") from None
