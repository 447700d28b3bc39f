"""The one module that imports durable_rules: register compiled stages, evaluate facts, record firings.

Actions never run user code: the closure registered for each rule only records which facts it
matched. Effects are applied in Python by the resolver, so outcomes never depend on the engine's
firing order, and an exception can never be swallowed into the engine's state.

Hazards found while building this adapter (not in shared/spec/durable-rules.md): a sid whose
every asserted fact was unhandled (no alpha node accepted it) still counts toward the 1024
live-sid limit, and `delete_state` on it aborts the process (SIGABRT). So every ruleset gets a
no-op "sink" rule per fact type: every normalised fact is accepted, and every sid is deleted.

Per process: one ruleset per compiled stage hash (registered once; durable-rules never frees
rulesets), the background dispatcher switched off, one sid per evaluation, state deleted in a
`finally`, evaluations serialised behind a lock. Facts are asserted one at a time in canonical
(type, id) order; a fact no rule matches is recorded as unmatched, not an error.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from planner.errors import RuleEngineError
from planner.policy.compiler import CRule, ruleset_hash, to_durable
from planner.policy.facts import FACT_SCHEMA
from planner.policy.reference import Firing

ENGINE_NAME = "durable_rules"
_LOCK = threading.Lock()
_HOST: Any = None
_REGISTERED: dict[str, dict[str, CRule]] = {}
_FIRED: list[tuple[str, dict[str, Any]]] | None = None
_SINK = "__sink__."


def available() -> bool:
    """True when the durable_rules C extension can be imported (not on Python 3.13+)."""
    try:
        import durable.engine  # noqa: F401
    except ImportError:
        return False
    return True


def engine_version() -> str:
    try:
        from importlib.metadata import version

        return version("durable_rules")
    except Exception:  # noqa: BLE001 - metadata lookups can fail in odd installs; the version is informational
        return "unknown"


def _host() -> Any:
    global _HOST
    if _HOST is None:
        from durable import engine

        class _AuditHost(engine.Host):  # type: ignore[misc, name-defined]
            def _run(self) -> None:  # no background timer threads (durable-rules.md section 8)
                return None

            def get_action(self, action_name: str) -> Any:
                def act(c: Any) -> None:
                    if not action_name.startswith(_SINK):
                        _record(action_name, {alias: dict(fact) for alias, fact in c._m.items()})

                return act

        _HOST = _AuditHost()
    return _HOST


def _record(rule_id: str, matched: dict[str, Any]) -> None:
    """What every action does: note the firing. Outcomes are decided later, in Python."""
    if _FIRED is not None:
        _FIRED.append((rule_id, matched))


def _ensure_registered(rules: tuple[CRule, ...]) -> str:
    name = "stage_" + ruleset_hash(rules)
    if name not in _REGISTERED:
        ruleset = to_durable(rules)
        for fact_type in FACT_SCHEMA:  # accept every fact (see the module docstring)
            ruleset[_SINK + fact_type] = {"all": [{"m": {"type": fact_type}}], "pri": 65000, "run": _SINK + fact_type}
        try:
            _host().register_rulesets({name: ruleset})
        except Exception as e:
            raise RuleEngineError(f"durable_rules refused a compiled ruleset ({rules[0].stage} stage): {e}") from e
        _REGISTERED[name] = {r.id: r for r in rules}
    return name


def evaluate(rules: tuple[CRule, ...], facts: list[dict[str, Any]]) -> list[Firing]:
    """Run one stage over `facts` (already normalised) and return the firings in engine order."""
    global _FIRED
    if not rules:
        return []
    from durable.engine import MessageNotHandledException, MessageObservedException

    with _LOCK:
        name = _ensure_registered(rules)
        host = _host()
        sid = uuid.uuid4().hex
        fired: list[tuple[str, dict[str, Any]]] = []
        _FIRED = fired
        accepted = False
        try:
            for fact in sorted(facts, key=lambda f: (f["type"], f["id"])):
                try:
                    host.assert_fact(name, {**fact, "sid": sid})
                    accepted = True
                except MessageNotHandledException as e:  # impossible with sink rules: a fact outside the schema
                    raise RuleEngineError(f"fact {fact.get('id')!r} of unknown type reached the engine") from e
                except MessageObservedException as e:
                    raise RuleEngineError(f"duplicate fact id {fact['id']!r} in one evaluation") from e
            state = host.get_state(name, sid) if accepted else None
            if isinstance(state, dict) and state.get("exception"):
                raise RuleEngineError(f"durable_rules action failed: {state['exception']}")
        except RuleEngineError:
            raise
        except Exception as e:
            raise RuleEngineError(f"durable_rules failed while evaluating the {rules[0].stage} stage: {e}") from e
        finally:
            _FIRED = None
            if accepted:  # never delete a sid without state: that aborts the process
                host.delete_state(name, sid)
    out = []
    for seq, (rule_id, matched) in enumerate(fired):
        bindings = {a: {k: v for k, v in f.items() if k != "sid"} for a, f in matched.items()}
        out.append(Firing(seq=seq, rule_id=rule_id, bindings=bindings))
    return out
