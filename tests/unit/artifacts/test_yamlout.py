"""Manifests read the same under YAML 1.1 (docker-compose, Kubernetes) and YAML 1.2 (ruamel)."""

from __future__ import annotations

import io

import yaml
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from planner.artifacts.yamlout import to_yaml

# strings YAML 1.1 would turn into booleans, numbers, nulls or timestamps when left plain
TRICKY = ["yes", "No", "on", "OFF", "y", "0.33", "0.11.0", "8000:8000", "1e5", "0x1F", "~", "null", "", "2026-11-23",
          "- a", "a: b", "#x", "$(LWS_GROUP_SIZE)", "${HF_TOKEN:-}", "it's", 'say "hi"', "multi\nline", "ünïcode"]


def test_tricky_strings_survive_both_yaml_versions() -> None:
    data = {"plain": {s: s for s in TRICKY if s}, "list": TRICKY, "n": 8, "f": 0.5, "t": True, "none": None,
            "empty_list": [], "empty_map": {}, "nested": [{"a": [1, {"b": "yes"}]}, [["x"]]]}
    text = to_yaml(data, comments=["header", "second line"])
    assert text.startswith("# header\n# second line\n")
    assert yaml.safe_load(text) == data  # YAML 1.1
    assert YAML(typ="safe", pure=True).load(io.StringIO(text)) == data  # YAML 1.2


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)), max_leaves=20)


@given(st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=5))
def test_any_json_like_document_round_trips_through_yaml_1_1(doc: dict) -> None:
    assert yaml.safe_load(to_yaml(doc)) == (doc or None)
