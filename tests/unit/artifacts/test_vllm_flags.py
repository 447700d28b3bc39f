"""The flag table the serve command is checked against agrees with vLLM's own parser dumps.

tests/data/vllm-flags/*.json are copies of shared/vllm-flags (argparse introspection of `vllm serve`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

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


# (flag, version) whose values vLLM checks after argparse (in a config's __post_init__), so the dump has no
# choices; the table's list is checked against the next dump's choices in test_config_checked_values instead.
CONFIG_CHECKED = {("--max-lora-rank", "0.11.0"): "LoRAConfig.__post_init__ possible_max_ranks"}


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_values_match_the_parser(version: str) -> None:
    options = _options(version)
    for flag in flag_table()["values"]:
        opt = options[flag]
        parser_values = opt["choices"]
        if parser_values is None and isinstance(opt["metavar"], list):
            parser_values = opt["metavar"]  # 0.33 --kv-cache-dtype: free string, values listed in metavar
        got = accepted_values(flag, version)
        if (flag, version) in CONFIG_CHECKED:
            assert parser_values is None and got is not None, (flag, version)
            continue
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


# ------------------------------------------------------------------------------------------- serving features

SERVING_FLAGS = ("--enable-lora", "--max-loras", "--max-lora-rank", "--max-cpu-loras", "--lora-dtype",
                 "--fully-sharded-loras", "--speculative-config", "--cpu-offload-gb", "--enable-prefix-caching",
                 "--no-enable-prefix-caching", "--limit-mm-per-prompt")


@pytest.mark.parametrize("version", VERSIONS)
def test_serving_feature_flags_are_in_the_table_and_every_dump(version: str) -> None:
    options = _options(version)
    for flag in SERVING_FLAGS:
        assert flag in flag_table()["flags"], flag
        assert flag in options and not options[flag]["deprecated"], (flag, version)
        assert flag_exists(flag, version), (flag, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_serving_feature_flag_kinds_match_the_parser(version: str) -> None:
    options = _options(version)
    for flag in ("--enable-lora", "--fully-sharded-loras", "--enable-prefix-caching"):
        assert options[flag]["nargs"] == 0 and options[flag]["is_boolean_flag"], (flag, version)
    assert options["--no-enable-prefix-caching"]["negates"]
    assert options["--no-enable-prefix-caching"]["dest"] == "enable_prefix_caching"
    for flag, kind in (("--max-loras", "int"), ("--max-lora-rank", "int"), ("--max-cpu-loras", "optional[int]"),
                       ("--cpu-offload-gb", "float"), ("--lora-dtype", "str")):
        assert options[flag]["type"] == kind, (flag, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_value_format_matches_the_parser_type(version: str) -> None:
    """A flag the table says takes JSON is parsed with json.loads by that version's parser."""
    options = _options(version)
    for flag, by_version in flag_table()["value_format"].items():
        applicable = [k for k in by_version if Version(str(k)) <= Version(version)]
        fmt = by_version[max(applicable, key=lambda k: Version(str(k)))]
        assert fmt == "json", (flag, version)
        assert options[flag]["type"] in ("json", "optional[json]"), (flag, version)
        assert "json.loads" in options[flag]["type_qualname"], (flag, version)


def test_config_checked_values() -> None:
    """0.11.0's --max-lora-rank list (LoRAConfig) is 0.19.0's parser choices less rank 1 (vLLM PR #26461)."""
    ranks_0_11 = accepted_values("--max-lora-rank", "0.11.0")
    choices_0_19 = _options("0.19.0")["--max-lora-rank"]["choices"]
    assert ranks_0_11 is not None and set(choices_0_19) - set(ranks_0_11) == {1}
    assert set(ranks_0_11) <= set(choices_0_19)
    assert _options("0.11.0")["--max-lora-rank"]["default"] in ranks_0_11
    assert accepted_values("--max-lora-rank", "0.8.5") is None  # not recorded before 0.11 (no dump)


def test_serving_flag_values_are_checked() -> None:
    with pytest.raises(InputError, match=r"^--max-lora-rank 4: vLLM 0\.11\.0 accepts only 8, 16, 32, 64, 128, 256, "
                                         r"320, 512$"):
        check_flag("--max-lora-rank", 4, "0.11.0")
    with pytest.raises(InputError, match=r"--max-lora-rank 1: vLLM 0\.11\.0"):
        check_flag("--max-lora-rank", 1, "0.11.0")
    check_flag("--max-lora-rank", 1, "0.19.0")
    check_flag("--max-lora-rank", 320, "0.11.0")
    with pytest.raises(InputError, match=r"^--lora-dtype float32: vLLM 0\.6\.4 accepts only auto, bfloat16, float16$"):
        check_flag("--lora-dtype", "float32", "0.6.4")
    check_flag("--lora-dtype", "bfloat16", "0.33.0")


def test_speculative_flags_per_version() -> None:
    """0.6.4 takes --speculative-model/--num-speculative-tokens only; from 0.8.5 only the JSON --speculative-config."""
    assert flag_exists("--speculative-model", "0.6.4") and flag_exists("--num-speculative-tokens", "0.6.4")
    assert not flag_exists("--speculative-config", "0.6.4")
    with pytest.raises(InputError, match=r"^vLLM 0\.6\.4 has no --speculative-config; choose a newer --vllm-version$"):
        check_flag("--speculative-config", '{"method": "ngram"}', "0.6.4")
    for version in ("0.8.5", *VERSIONS):
        assert flag_exists("--speculative-config", version)
        assert not flag_exists("--speculative-model", version) and not flag_exists("--num-speculative-tokens", version)
    assert flag_table()["value_format"]["--speculative-config"] == {"0.8.5": "json"}


def test_prefix_caching_off_form_and_mm_limit_syntax_per_version() -> None:
    assert flag_exists("--enable-prefix-caching", "0.6.4")
    assert not flag_exists("--no-enable-prefix-caching", "0.6.4")  # 0.6.x: store_true, off by default
    assert flag_exists("--no-enable-prefix-caching", "0.8.5")
    assert flag_table()["value_format"]["--limit-mm-per-prompt"] == {"0.6.4": "key=value", "0.11.0": "json"}
