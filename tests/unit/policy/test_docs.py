"""docs/rules.md documents every fact field, verb, operator and decision key the code accepts."""

from __future__ import annotations

import re
from pathlib import Path

from planner.policy.facts import FACT_SCHEMA
from planner.policy.loader import SCALABLE
from planner.policy.schema import DECISION_KEYS, OPERATORS, VERBS

DOC = (Path(__file__).resolve().parents[3] / "docs" / "rules.md").read_text()


def _section(fact_type: str) -> str:
    m = re.search(rf"^### {fact_type}\n(.*?)(?=^### |^## )", DOC, re.S | re.M)
    assert m, f"no section for fact type {fact_type}"
    return m.group(1)


def test_every_fact_field_documented_with_its_type() -> None:
    for fact_type, fields in FACT_SCHEMA.items():
        section = _section(fact_type)
        documented = dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", section, re.M))
        expected = {**fields, "key": "str"}
        assert documented == expected, fact_type


def test_verbs_operators_keys_quantities_documented() -> None:
    for word in (*VERBS, *DECISION_KEYS, *SCALABLE):
        assert f"`{word}" in DOC, word
    assert " ".join(OPERATORS) in DOC
