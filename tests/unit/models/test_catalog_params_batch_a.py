"""Parameter counts of the batch-A catalog models (issue 21) against the figure a public source states.

One case per model added in planner/models/catalog/sources/batch-a.yaml that has a published count:
(catalog id, published total, published active or None, citation, what the figure counts). The planner's
total_params must be within 1% of it. Active counts are only published as a card's short figure ("3.3B
activated"), which Qwen truncates rather than rounds; those are compared at the precision given (within one
unit of the last stated digit, and 2%). Cases where the planner is known to miss are marked xfail
with the reason, and where a source breaks the total down (language model apart from the vision tower) that
part is checked.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from planner.models.params import active_params, text_params, total_params
from planner.models.sources import CATALOG_DIR, load_model

KQ = "keras-team/keras-hub@12870d2794fb0f7a098e9afcc1ed37f3ef2e8cd2:keras_hub/src/models/qwen/qwen_presets.py"
KQ3 = "keras-team/keras-hub@1df65dab96fb417c6df011c25802017109e96c66:keras_hub/src/models/qwen3/qwen3_presets.py"
KQM = ("keras-team/keras-hub@71453d08f59edc90d276e999319fc51e61cbf82c:"
       "keras_hub/src/models/qwen3_moe/qwen3_moe_presets.py")
REPORT = "model_inspector report (safetensors total), GitHub file ref {}"
CARD = "model card, public GitHub copy file ref {}"

# What the published figure counts, and how to compare ours with it.
EXACT = "exact"  # a safetensors / preset total: every stored tensor once (tied embeddings once)
ROUNDED = "rounded"  # a card's short figure such as "7.61B" or "235B" (Qwen truncates: 7.6156B is "7.61B")


class Case(NamedTuple):
    model: str
    total: int
    active: int | None
    citation: str
    counts: str = EXACT


CASES = [
    # ----------------------------------------------------------------------------- Qwen3 (dense)
    Case("Qwen/Qwen3-0.6B", 596_049_920, None, f"{KQ3} qwen3_0.6b_en"),
    Case("Qwen/Qwen3-1.7B", 1_720_574_976, None, f"{KQ3} qwen3_1.7b_en"),
    Case("Qwen/Qwen3-4B", 4_022_468_096, None, f"{KQ3} qwen3_4b_en"),
    Case("Qwen/Qwen3-14B", 14_768_307_200, None, f"{KQ3} qwen3_14b_en"),
    # The FP8 checkpoint quantizes Qwen3-32B: same parameters (its fp32 block scales are not parameters).
    Case("Qwen/Qwen3-32B-FP8", 32_762_123_264, None, f"{KQ3} qwen3_32b_en (the BF16 model it quantizes)"),
    # ----------------------------------------------------------------------------- Qwen3 (MoE)
    Case("Qwen/Qwen3-235B-A22B-FP8", 235_093_634_560, None, f"{KQM} qwen3_moe_235b_a22b_en (the BF16 model)"),
    Case("Qwen/Qwen3-235B-A22B-Instruct-2507", 235_000_000_000, 22_000_000_000,
         "'235B in total and 22B activated', " + CARD.format(55061739224), ROUNDED),
    Case("Qwen/Qwen3-30B-A3B-Instruct-2507", 30_500_000_000, 3_300_000_000,
         "'30.5B in total and 3.3B activated', " + CARD.format(2883265704), ROUNDED),
    Case("Qwen/Qwen3-Coder-480B-A35B-Instruct", 480_000_000_000, 35_000_000_000,
         "'480B in total and 35B activated', " + CARD.format(61601994302), ROUNDED),
    # ----------------------------------------------------------------------------- Qwen2.5 / Qwen2 / QwQ
    Case("Qwen/Qwen2.5-0.5B", 494_032_768, None, f"{KQ} qwen2.5_0.5b_en"),
    Case("Qwen/Qwen2.5-0.5B-Instruct", 494_032_768, None, f"{KQ} qwen2.5_instruct_0.5b_en"),
    Case("Qwen/Qwen2.5-1.5B-Instruct", 1_540_000_000, None, "'Total Parameters: 1.54B', GitHub file ref 58180494035",
         ROUNDED),
    Case("Qwen/Qwen2.5-3B", 3_085_938_688, None, f"{KQ} qwen2.5_3b_en"),
    Case("Qwen/Qwen2.5-3B-Instruct", 3_085_938_688, None, REPORT.format(62693603738)),
    Case("Qwen/Qwen2.5-7B", 7_610_000_000, None, "'Number of Parameters: 7.61B', GitHub file ref 58180494035", ROUNDED),
    Case("Qwen/Qwen2.5-14B", 14_700_000_000, None, "'Number of Parameters: 14.7B', " + CARD.format(5681995688),
         ROUNDED),
    Case("Qwen/Qwen2.5-32B", 32_500_000_000, None, "'Number of Parameters: 32.5B', " + CARD.format(7965384153),
         ROUNDED),
    Case("Qwen/Qwen2.5-32B-Instruct", 32_763_876_352, None, f"{KQ} qwen2.5_instruct_32b_en"),
    Case("Qwen/QwQ-32B", 32_763_876_352, None, REPORT.format(63012281180)),
    Case("Qwen/Qwen2-7B-Instruct", 7_615_616_512, None, REPORT.format(62532383149)),
    # ----------------------------------------------------------------------------- Moonshot
    # The safetensors total also holds the fp32 weight_scale_inv tensors (63.5M, 0.006%); the layer-0 dense MLP
    # must be counted as dense (first_k_dense_replace 1 under model_type kimi_k2).
    Case("moonshotai/Kimi-K2-Instruct", 1_026_470_731_056, None, REPORT.format(62698259723) + " (incl. fp32 scales)"),
]


def _last_digit_unit(published: int) -> int:
    """One unit of the last significant digit of a short figure: 3_300_000_000 ("3.3B") -> 100_000_000."""
    text = str(published)
    return 10 ** (len(text) - len(text.rstrip("0")))


@pytest.mark.parametrize("case", CASES, ids=[c.model for c in CASES])
def test_total_params_within_1pct_of_published(case: Case) -> None:
    ours = total_params(load_model(case.model))
    assert abs(ours - case.total) / case.total < 0.01, (ours, case.total, case.citation)


@pytest.mark.parametrize("case", [c for c in CASES if c.active], ids=[c.model for c in CASES if c.active])
def test_active_params_match_published(case: Case) -> None:
    """Active counts are published only as short card figures. Ours (routed top-k + shared experts, attention,
    embeddings and lm_head) is 22.19B, 3.35B and 35.47B: within one unit of "22B", "3.3B" and "35B", but 1.6%
    and 1.4% above the last two, so the comparison is at the card's precision (and within 2%), not 1%."""
    arch = load_model(case.model)
    assert arch.is_moe and case.active is not None
    ours = active_params(arch)
    assert abs(ours - case.active) < _last_digit_unit(case.active), (ours, case.active, case.citation)
    assert abs(ours - case.active) / case.active < 0.02, (ours, case.active, case.citation)


# ----------------------------------------------------------------------------- where a source splits the total
# The model_inspector reports list every tensor: language model = total - the `model.visual.*` tensors.
# Qwen3-VL tower (27 blocks, hidden 1152, mlp 4304, patch 16, temporal 2, 2304 positions) + merger + 3 deepstack
# mergers (4608 -> out_hidden): 576,388,336 for out_hidden 4096 (8B), 538,631,408 for 2048 (30B-A3B).
QWEN3_VL_TEXT = [
    pytest.param("Qwen/Qwen3-VL-8B-Instruct", 8_767_123_696 - 576_388_336, id="Qwen3-VL-8B-text"),
    pytest.param("Qwen/Qwen3-VL-30B-A3B-Instruct", 31_070_754_032 - 538_631_408, id="Qwen3-VL-30B-A3B-text"),
]


@pytest.mark.parametrize(("model", "published_text"), QWEN3_VL_TEXT)
def test_qwen3_vl_language_model_matches_report(model: str, published_text: int) -> None:
    """8,190,735,360 and 30,532,122,624 (= keras-hub's Qwen3-8B and Qwen3-30B-A3B presets). At the time of writing
    ours is 256 per layer lower (no q/k-norm weights for qwen3_vl_text), far inside 1%."""
    arch = load_model(model)
    assert abs(text_params(arch) - published_text) / published_text < 0.01, (text_params(arch), published_text)


# ----------------------------------------------------------------------------- vision towers
# Qwen2.5-VL / Qwen3-VL / Qwen3.5 give the tower's block count as `depth` (vllm qwen2_5_vl.py, qwen3_vl.py).
VISION = [
    pytest.param("Qwen/Qwen3-VL-8B-Instruct", 8_767_123_696, REPORT.format(62543607479), id="Qwen3-VL-8B"),
    pytest.param("Qwen/Qwen3-VL-30B-A3B-Instruct", 31_070_754_032, REPORT.format(62501178117), id="Qwen3-VL-30B-A3B"),
    pytest.param("Qwen/Qwen2.5-VL-3B-Instruct", 3_750_000_000, "'Nano real 3.75B', GitHub file ref 1570491832",
                 id="Qwen2.5-VL-3B"),
    pytest.param("Qwen/Qwen3.5-35B-A3B", 35_951_822_704, REPORT.format(62628833147) + " (incl. MTP layer)",
                 marks=pytest.mark.xfail(reason="the published total includes the MTP layer, which vLLM loads only "
                                                "for speculative decoding (the planner adds it only under "
                                                "--speculative-config)", strict=True),
                 id="Qwen3.5-35B-A3B"),
]


def test_qwen2_5_vl_tower_by_hand() -> None:
    """Qwen2.5-VL-7B's tower from its vision_config (depth 32, hidden 1280, mlp 3420, patch 14, temporal 2,
    out 3584): patch 3*2*14*14*1280 = 1,505,280; per block 4h^2+4h (qkv, proj with bias) + 3*h*3420 + 2*3420 + h
    (gated MLP with bias) + 2h (RMSNorms) = 19,702,200, x32 = 630,470,400; merger h + 5120^2 + 5120 + 5120*3584 +
    3584 = 44,574,464. Sum 676,550,144; with Qwen2.5-7B's 7,615,616,512 that is 8.29B, the card's figure."""
    from planner.models.params import vision_params

    assert vision_params(load_model("Qwen/Qwen2.5-VL-7B-Instruct")) == 676_550_144


@pytest.mark.parametrize(("model", "published", "citation"), VISION)
def test_vision_language_models_against_published_total(model: str, published: int, citation: str) -> None:
    ours = total_params(load_model(model))
    assert abs(ours - published) / published < 0.01, (ours, published, citation)


def test_cases_are_batch_a_models() -> None:
    """Every case names a model recorded in sources/batch-a.yaml, once; each recorded published count has a case."""
    records = {}
    for line in (CATALOG_DIR / "sources" / "batch-a.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("- {"):
            rec = json.loads(line[2:])
            records[rec["id"]] = rec
    ids = [c.model for c in CASES]
    assert len(ids) == len(set(ids)) and set(ids) <= set(records)
    assert {i for i, r in records.items() if r["published_params"]} == set(ids)
    for case in CASES:
        assert records[case.model]["published_params"] == case.total, case.model
    for param in VISION:
        assert records[param.values[0]]["published_params"] is None  # a miss is noted, not recorded as published
