"""The flag table the serve command is checked against agrees with vLLM's own parser dumps.

tests/data/vllm-flags/*.json are copies of shared/vllm-flags (argparse introspection of `vllm serve`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.artifacts.flags import accepted_values, check_flag, flag_exists, flag_table
from planner.errors import InputError

DUMPS = Path(__file__).parents[2] / "data" / "vllm-flags"
VERSIONS = ("0.11.0", "0.19.0", "0.33.0")


def _options(version: str) -> dict:
    return json.loads((DUMPS / f"{version}.json").read_text())["options"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_flag_the_planner_writes_exists_exactly_when_the_parser_has_it(version: str) -> None:
    options = _options(version)
    for flag in flag_table()["flags"]:
        assert flag_exists(flag, version) == (flag in options), (flag, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_values_match_the_parser(version: str) -> None:
    options = _options(version)
    for flag in flag_table()["values"]:
        opt = options[flag]
        parser_values = opt["choices"]
        if parser_values is None and isinstance(opt["metavar"], list):
            parser_values = opt["metavar"]  # 0.33 --kv-cache-dtype: free string, values listed in metavar
        got = accepted_values(flag, version)
        assert (sorted(map(str, got)) if got is not None else None) == \
            (sorted(map(str, parser_values)) if parser_values is not None else None), (flag, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_port_default_matches_the_parser(version: str) -> None:
    assert _options(version)["--port"]["default"] == flag_table()["port_default"]


def test_older_versions_lack_newer_flags() -> None:
    # vllm-accounting.md 5.2: --data-parallel-size-local first appears in 0.11
    assert not flag_exists("--data-parallel-size-local", "0.8.5")
    with pytest.raises(InputError, match=r"vLLM 0\.8\.5 has no --data-parallel-size-local"):
        check_flag("--data-parallel-size-local", 8, "0.8.5")


def test_a_value_the_version_refuses_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"--kv-cache-dtype fp8_inc: vLLM 0\.8\.5 accepts only auto, fp8"):
        check_flag("--kv-cache-dtype", "fp8_inc", "0.8.5")
    check_flag("--kv-cache-dtype", "fp8_inc", "0.11.0")
    with pytest.raises(InputError, match="--block-size 256"):
        check_flag("--block-size", 256, "0.11.0")
    check_flag("--block-size", 256, "0.19.0")  # any int from 0.19 (the parser has no choices)
