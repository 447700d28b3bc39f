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
        rules = compile_rules(self.packset.rules, stage, self.params)
        if self.evaluator == "durable":
            from planner.policy import engine

            firings = engine.evaluate(rules, facts)
        else:
            from planner.policy import reference

            firings = reference.evaluate(rules, facts)
        effects = apply_firings(self.packset, stage, firings, self.params)
        if stage == "baseline":
            from planner.policy.resolver import resolve_params

            self.params, self.param_set_by = resolve_params(self.packset, effects.sets)
        self.stages[stage] = effects
        return effects

    def audit(self) -> dict[str, Any]:
        firings = [f for s in STAGES if s in self.stages for f in self.stages[s].firings]
        return {
            "engine": self.engine_name,
            "packs": [p.audit() for p in self.packset.packs],
            "params": {n: {"value": v, "set_by": self.param_set_by.get(n, "default")} for n, v in self.params.items()},
            "overrides": self.packset.overrides,
            "firings": firings,
        }
