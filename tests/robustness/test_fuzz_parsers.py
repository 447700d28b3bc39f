"""Fuzzing the parsers of untrusted files (issue 8 item 3): whatever the bytes, only the planner's own
input errors escape. The GPU-probe and vLLM-log parsers have their own fuzz tests beside their unit
tests (tests/unit/hardware/test_nvidia_parse.py, test_amd_parse.py, tests/unit/test_checklog.py); these
cover config.json, rule packs, profiles and the YAML reader, and re-run the two others on raw bytes.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.artifacts.profile import read_profile
from planner.checklog import parse_vllm_log
from planner.errors import InputError
from planner.hardware.captures import parse_probe_text
from planner.models.arch import parse_config
from planner.policy.loader import read_pack_file
from planner.yamlio import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "planner" / "models" / "catalog").rglob("config.json"))
def _pack_head(text: str, rules: int = 12) -> str:
    """The vendor pack cut after its first `rules` rules (a whole, valid pack): every construct the full pack has
    (params of each type, conditions, actions), at a third of the parse time per fuzz example."""
    start = text.index("\nrules:\n")
    cut = start
    for _ in range(rules + 1):
        cut = text.find("\n  - id: ", cut + 1)
        if cut < 0:
            return text
    return text[:cut + 1]


PACK_TEXT = _pack_head((ROOT / "rules" / "core" / "pack.yaml").read_text())
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def _mutate(cfg: dict[str, Any], rnd: random.Random, values: list[Any]) -> dict[str, Any]:
    """Delete, replace or retype a few keys, at the top level or inside text_config."""
    out = json.loads(json.dumps(cfg))
    target = out.get("text_config") if isinstance(out.get("text_config"), dict) and rnd.random() < 0.3 else out
    keys = list(target)
    for v in values:
        if not keys:
            break
        key = rnd.choice(keys)
        if rnd.random() < 0.3:
            target.pop(key, None)
        else:
            target[key] = v
    return out


@FUZZ
@given(st.sampled_from(CONFIGS), st.randoms(use_true_random=False), st.lists(json_values, min_size=1, max_size=4))
def test_config_json_mutations_raise_only_input_errors(path: Path, rnd: random.Random, values: list[Any]) -> None:
    cfg = _mutate(json.loads(path.read_text(), parse_constant=float), rnd, values)
    try:
        arch = parse_config(cfg, name="fuzz/model", source=str(path))
    except InputError:
        return
    assert arch.num_layers > 0


@FUZZ
@given(st.integers(0, len(PACK_TEXT)), st.integers(0, 200), st.text(max_size=40))
def test_rule_pack_text_mutations_raise_only_input_errors(tmp_path_factory: Any, at: int, cut: int,
                                                          junk: str) -> None:
    p = tmp_path_factory.mktemp("pack") / "site.yaml"
    p.write_text((PACK_TEXT[:at] + junk + PACK_TEXT[at + cut:]).replace("layer: vendor", "layer: site"))
    with contextlib.suppress(InputError):
        read_pack_file(p)


@FUZZ
@given(st.binary(max_size=400))
def test_yaml_reader_on_raw_bytes(data: bytes) -> None:
    with contextlib.suppress(InputError):
        load_yaml_text(data.decode("utf-8", "replace"), "fuzz.yaml")


@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_profile_documents_raise_only_input_errors(tmp_path_factory: Any, doc: dict[str, Any]) -> None:
    p = tmp_path_factory.mktemp("profile") / "profile.yaml"
    p.write_text(json.dumps(doc))  # JSON is YAML
    with contextlib.suppress(InputError):
        read_profile(p)


@FUZZ
@given(st.binary(max_size=2000))
def test_smi_and_log_parsers_on_raw_bytes(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for parse in (lambda: parse_probe_text(text, "fuzz.txt"), lambda: parse_vllm_log(text, "fuzz.log")):
        with contextlib.suppress(InputError):
            parse()
