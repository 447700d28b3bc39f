"""Rule packs: schema, loader, compiler, engine adapter, reference evaluator, resolver.

Glossary
  pack      a versioned YAML file of params and rules (vendor layer in rules/, site layer from --rules)
  fact      a typed dict emitted by the calculators or the probe (facts schema 1, policy/facts.py)
  rule      when (patterns over facts) -> then (actions); belongs to a stage
  stage     baseline (params, scales) -> sizing (per candidate: forbid/prefer/warn) -> recommend (settings)
  effect    what an action asks for: set, scale, recommend, forbid, prefer, warn
  decision  the value chosen for one setting, by the resolver, with the rule behind it and what it beat
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from planner.policy.compiler import compile_rules
from planner.policy.loader import PackSet
from planner.policy.resolver import StageEffects, apply_firings

STAGES = ("baseline", "sizing", "recommend")


@dataclass
class PolicyRun:
    """Evaluates the stages of one plan and keeps the audit trail."""

    packset: PackSet
    evaluator: str = "auto"  # "durable" | "reference" | "auto"
    params: dict[str, Any] = field(default_factory=dict)
    param_set_by: dict[str, str] = field(default_factory=dict)
    stages: dict[str, StageEffects] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    facts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # last facts evaluated per stage
    timing_ms: dict[str, float] = field(default_factory=lambda: {"compile": 0.0, "evaluate": 0.0})
    evaluations: int = 0

    def __post_init__(self) -> None:
        self.params = self.packset.param_values()
        self.param_set_by = {n: p.set_by for n, p in self.packset.params.items()}
        if self.evaluator == "auto":
            self.evaluator = os.environ.get("VLLM_PLANNER_EVALUATOR", "auto")
        if self.evaluator not in ("auto", "durable", "reference"):
            from planner.errors import InputError

            raise InputError(f"$VLLM_PLANNER_EVALUATOR: {self.evaluator!r} is not auto, durable or reference")
        if self.evaluator == "auto":
            from planner.policy import engine

            if engine.available():
                self.evaluator = "durable"
            else:
                self.evaluator = "reference"
                self.notices.append(
                    f"durable_rules is not installed (Python {sys.version_info.major}.{sys.version_info.minor}); "
                    "rules were evaluated by the built-in reference evaluator"
                )

    @property
    def engine_name(self) -> str:
        return "durable_rules" if self.evaluator == "durable" else "reference"

    def run_stage(self, stage: str, facts: list[dict[str, Any]]) -> StageEffects:
        """Evaluate one stage over normalised facts; baseline `set` effects update the params."""
        t0 = time.perf_counter()
        rules = compile_rules(self.packset.rules, stage, self.params)
        t1 = time.perf_counter()
        if self.evaluator == "durable":
            from planner.policy import worker  # durable_rules runs in a contained child process

            firings = worker.evaluate(rules, facts)
        else:
            from planner.policy import reference

            firings = reference.evaluate(rules, facts)
        effects = apply_firings(self.packset, stage, firings, self.params)
        self.timing_ms["compile"] += (t1 - t0) * 1000
        self.timing_ms["evaluate"] += (time.perf_counter() - t1) * 1000
        self.evaluations += 1
        self.facts[stage] = facts
        if stage == "baseline":
            from planner.policy.resolver import resolve_params

            self.params, self.param_set_by = resolve_params(self.packset, effects.sets)
        self.stages[stage] = effects
        return effects

    def rule_results(self) -> dict[str, int]:
        fired = {f["rule"] for s in self.stages.values() for f in s.firings}
        enabled = [r for r in self.packset.rules if r.enabled]
        return {"fired": len(fired), "not_fired": len([r for r in enabled if r.id not in fired]),
                "disabled": len(self.packset.rules) - len(enabled)}

    def input_facts(self) -> list[dict[str, Any]]:
        """The facts of the last evaluation of each stage, deduplicated by id."""
        seen: dict[str, dict[str, Any]] = {}
        for stage in STAGES:
            for f in self.facts.get(stage, []):
                seen.setdefault(f["id"], f)
        return [seen[k] for k in sorted(seen)]

    def audit(self) -> dict[str, Any]:
        firings = [f for s in STAGES if s in self.stages for f in self.stages[s].firings]
        return {
            "engine": self.engine_name,
            "packs": [p.audit() for p in self.packset.packs],
            "params": {n: {"value": v, "set_by": self.param_set_by.get(n, "default")} for n, v in self.params.items()},
            "overrides": self.packset.overrides,
            "firings": firings,
        }
