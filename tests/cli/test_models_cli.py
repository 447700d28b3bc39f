"""`vllm-planner models [QUERY] [--json]` (issue 21): search the bundled catalog by id substring and by the
words moe, dense, vision, quantized, fp8, ...; each row shows parameters (total, active for MoE), architecture,
attention, context, the quantization method and the alias target, all from index.json."""

from __future__ import annotations

import json

import pytest

from planner.models.sources import CATALOG_DIR
from tests.clirun import run

INDEX = json.loads((CATALOG_DIR / "index.json").read_text(encoding="utf-8"))
OLD_ROW_KEYS = {"id", "provenance", "source", "architecture", "notes", "published_params", "published_params_note"}


def models_json(*args: str) -> dict:
    rc, out, err = run("models", *args, "--json")
    assert rc == 0, err
    return json.loads(out)


def ids(*args: str) -> list[str]:
    return [m["id"] for m in models_json(*args)["models"]]


def test_no_query_lists_everything_backward_compatible() -> None:
    """`models --json` keeps {models: [...]} with every earlier field; rows are extended, nothing renamed."""
    data = models_json()

    assert list(data) == ["models"]
    assert [m["id"] for m in data["models"]] == sorted((r["id"] for r in INDEX), key=str.lower)
    for row, m in zip(sorted(INDEX, key=lambda r: r["id"].lower()), data["models"], strict=True):
        assert set(m) >= OLD_ROW_KEYS
        assert {k: m[k] for k in row} == row  # the index row as it is
        assert isinstance(m["tags"], list)


def test_id_substring_is_case_insensitive() -> None:
    got = ids("QWEN3")

    assert got == [r["id"] for r in sorted(INDEX, key=lambda r: r["id"].lower()) if "qwen3" in r["id"].lower()]
    assert "Qwen/Qwen3-8B" in got and "Qwen/Qwen2.5-7B-Instruct" not in got


@pytest.mark.parametrize(("word", "has"), [
    ("moe", lambda r: r["is_moe"]),
    ("dense", lambda r: not r["is_moe"]),
    ("vision", lambda r: r["multimodal"]),
    ("quantized", lambda r: r["quantization"] is not None),
    ("alias", lambda r: r["alias_of"] is not None),
    ("mla", lambda r: r["attention"] == "mla"),
])
def test_words_match_the_index_columns(word: str, has: object) -> None:
    want = {r["id"] for r in INDEX if has(r) or word in r["id"].lower() or word in r["architecture"].lower()}

    assert set(ids(word)) == want and want


def test_fp8_finds_checkpoints_quantized_to_fp8_whatever_their_name() -> None:
    """DeepSeek-V3's config is FP8 (no FP8 in the id); ModelOpt's `modelopt` method is FP8."""
    got = ids("fp8")

    assert {"deepseek-ai/DeepSeek-V3", "nvidia/Llama-3.1-70B-Instruct-FP8", "Qwen/Qwen3-30B-A3B-FP8"} <= set(got)
    assert "Qwen/Qwen3-30B-A3B" not in got
    assert "nvidia/Qwen3-235B-A22B-NVFP4" in ids("fp4") and "openai/gpt-oss-20b" in ids("fp4")


def test_every_word_must_match() -> None:
    got = ids("qwen3", "moe")

    assert got and all("qwen3" in i.lower() for i in got)
    assert "Qwen/Qwen3-30B-A3B" in got and "Qwen/Qwen3-8B" not in got
    assert ids("qwen3 moe") == got  # one quoted argument works the same


def test_console_row_shows_params_architecture_attention_context_quantization() -> None:
    rc, out, err = run("models", "qwen3-30b")

    assert rc == 0, err
    assert "match 'qwen3-30b'" in out
    line = next(x for x in out.splitlines() if "Qwen/Qwen3-30B-A3B-FP8" in x)
    for cell in ("30.5B (3.4B active)", "Qwen3MoeForCausalLM", "full", "40,960", "fp8", "MoE"):
        assert cell in line, (cell, line)
    plain = next(x for x in out.splitlines() if "Qwen/Qwen3-30B-A3B " in x)
    assert "fp8" not in plain  # an unquantized checkpoint is not marked


def test_console_marks_aliases_and_dense_params() -> None:
    rc, out, _ = run("models", "llama-3.1-405b")

    assert rc == 0
    alias = next(x for x in out.splitlines() if "meta-llama/Llama-3.1-405B-Instruct" in x)
    assert "alias of meta-llama/Llama-3.1-405B" in alias and "405.9B" in alias and "active" not in alias


def test_json_rows_carry_the_index_columns() -> None:
    row = next(m for m in models_json("mixtral-8x7b-instruct")["models"])

    assert row["id"] == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert row["alias_of"] == "mistralai/Mixtral-8x7B-v0.1"
    assert (row["params_total"], row["params_active"], row["is_moe"]) == (46_702_792_704, 12_879_925_248, True)
    assert {"moe", "alias"} <= set(row["tags"])


def test_no_match_exits_zero_with_did_you_mean() -> None:
    rc, out, err = run("models", "qwen4")

    assert rc == 0, err
    line = out.strip()
    assert line.startswith("no bundled model matches 'qwen4'; did you mean: ") and line.endswith("?")
    assert "qwen3" in line.split("did you mean: ", 1)[1]
    data = models_json("qwen4")
    assert data["models"] == [] and data["query"] == "qwen4" and "qwen3" in data["did_you_mean"]


def test_no_match_for_an_id_suggests_ids() -> None:
    rc, out, _ = run("models", "meta-llama/Llama-3.1-405B-Instruct-FP8")

    assert rc == 0
    assert out.strip().startswith("no bundled model matches 'meta-llama/Llama-3.1-405B-Instruct-FP8'; did you mean: "
                                  "meta-llama/Llama-3.1-405B-Instruct")


def test_no_match_and_nothing_close() -> None:
    rc, out, _ = run("models", "xyzzy")

    assert rc == 0 and out.strip() == "no bundled model matches 'xyzzy'"


def test_query_is_shown_as_text() -> None:
    rc, out, _ = run("models", "[bold]x\x1b[31m")

    assert rc == 0 and "\x1b" not in out and "no bundled model matches '[bold]x" in out


def test_a_very_long_query_is_answered_at_once_without_suggestions() -> None:
    """difflib is quadratic in the query length: a 100,000-character query used to take 36 s. Past 200
    characters (longer than any id) there is no suggestion to make."""
    rc, out, _ = run("models", "a" * 100_000)
    assert rc == 0 and "no bundled model matches" in out and "did you mean" not in out


def test_phi3_vision_counts_as_multimodal() -> None:
    """Phi-3.5-vision describes its CLIP encoder under `img_processor` / `embd_layer` (no vision_config)."""
    rc, out, _ = run("models", "multimodal", "--json")
    assert rc == 0
    assert "microsoft/Phi-3.5-vision-instruct" in {m["id"] for m in json.loads(out)["models"]}
