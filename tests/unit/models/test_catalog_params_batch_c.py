"""Parameter counts of the batch-C catalog models (issue 21) against the figure a public source states.

One case per model added in planner/models/catalog/sources/batch-c.yaml that has a published count:
(catalog id, published total, citation). The planner's total_params must be within 1% of it. Most batch-C models
are published only as rounded card figures ("7B", "1.1B"); those records keep published_params null and say so in
published_params_note, and are not cases here. Phi-3.5-vision-instruct is left out on purpose: its card's "4.2B"
includes the CLIP image encoder, which the config does not describe and the planner does not count.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from planner.models.params import total_params
from planner.models.sources import CATALOG_DIR, load_model

KERAS = "keras-team/keras-hub@71453d08f59edc90d276e999319fc51e61cbf82c:keras_hub/src/models"


class Case(NamedTuple):
    model: str
    total: int
    citation: str


CASES = [
    # KerasHub preset metadata.params: the safetensors total, tied embeddings counted once (Gemma ties them).
    Case("google/gemma-2-27b-it", 27_227_128_320, f"{KERAS}/gemma/gemma_presets.py gemma2_instruct_27b_en"),
    Case("google/gemma-2-2b-it", 2_614_341_888, f"{KERAS}/gemma/gemma_presets.py gemma2_instruct_2b_en"),
    # The preset does not say base or -it; gemma_2b_en and gemma_instruct_2b_en carry the same count.
    Case("google/gemma-2b", 2_506_172_416, f"{KERAS}/gemma/gemma_presets.py gemma_2b_en"),
    # A quantized checkpoint counts the logical weights it was made from: AWQ packs 8 4-bit weights per int32, so the
    # stored element count is smaller, but the model is Llama-2-7B (KerasHub's count of the unquantized model).
    Case("TheBloke/Llama-2-7B-AWQ", 6_738_415_616, f"{KERAS}/llama/llama_presets.py llama2_7b_en"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.model for c in CASES])
def test_total_params_within_1pct_of_published(case: Case) -> None:
    ours = total_params(load_model(case.model))
    assert abs(ours - case.total) / case.total < 0.01, (ours, case.total, case.citation)


def _records() -> dict[str, dict]:
    lines = (CATALOG_DIR / "sources" / "batch-c.yaml").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in (json.loads(line[2:]) for line in lines if line.startswith("- {"))}


def test_cases_are_batch_c_models_with_their_recorded_count() -> None:
    """Every case names a model recorded in sources/batch-c.yaml, once, with the same published_params."""
    records = _records()
    models = [c.model for c in CASES]
    assert len(models) == len(set(models))
    for case in CASES:
        assert records[case.model]["published_params"] == case.total, case.model


def test_every_recorded_count_has_a_case() -> None:
    """A batch-C record that states an exact published count is checked here."""
    with_count = {rid for rid, r in _records().items() if r["published_params"] is not None}
    assert with_count == {c.model for c in CASES}
