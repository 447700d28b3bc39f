"""Parameter counts of the batch-D catalog models (issue 21) against the figure a public source states.

One case per model in planner/models/catalog/sources/batch-d.yaml that has a published count. Most of batch D
is quantized checkpoints (ModelOpt NVFP4 / FP8, FP8 block, INT4): quantization changes the bytes stored per weight
(NVFP4: 4 bits + one FP8 scale per 16 weights + fp32 global scales; FP8: 1 byte + fp32 scales; INT4 pack-quantized:
8 per int32 + a scale per 32), not the number of logical parameters, so each is checked against the published count
of the model it quantizes (the configs share that model's geometry; see the record's notes).

Comparison: total within 1% of the published figure, active within 1% too, except where the source rounds to a
whole unit ("40B", "10B", "37B", "32B"): 1% of a rounded figure is finer than the figure itself, so those are
compared within one unit of the last stated digit (as batch A does for Qwen's truncated card figures). Where a
card's active figure leaves out the input embedding and lm_head (GLM-5, MiniMax-M2) ours drops them too.
Models load through load_catalog_dir (the directory), so these tests do not depend on the rebuilt index.json.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from planner.models.arch import ModelArch
from planner.models.params import active_params, text_params, total_params
from planner.models.sources import CATALOG_DIR, load_catalog_dir

B = 10**9
NEMO = "NVIDIA-NeMo/Nemotron README model table, GitHub file ref 60999544624"
GLM = "github:zai-org/GLM-5@1a977a8a92e810bd78b0c0a98f8623c8a2c02751:README.md ('744B parameters (40B active)')"
MINIMAX = "MiniMax-M2 card ('230 billion total ... 10 billion active'), GitHub file ref 2648239435"
DSV31 = "DeepSeek-V3.1 card table '| DeepSeek-V3.1 | 671B | 37B |', GitHub file ref 70195474693"
DSV32 = "'DeepSeek-V3.2-Exp / V3.2 / Speciale | 671B / 37B', GitHub file ref 68440688660 (secondary table)"
KIMI = "Kimi K2.5 card 'Total Parameters | 1T', 'Activated Parameters | 32B', GitHub file ref 36711332210"
Q397 = "Qwen3.5-397B-A17B card '397B in total and 17B activated', GitHub file ref 55059422624"
Q122 = "nvidia/Qwen3.5-122B-A10B-NVFP4 card '122B in total and 10B activated', GitHub file ref 68848971118"


def embeddings(arch: ModelArch) -> int:
    """Input embedding plus lm_head: what 'active parameters' figures that exclude embeddings leave out."""
    return arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)


def close(ours: int, published: float, unit: float | None) -> bool:
    """Within 1%, or within one unit of the last stated digit when the source rounds to `unit`."""
    return abs(ours - published) <= max(0.01 * published, unit or 0)


class Case(NamedTuple):
    model: str
    total: int  # the record's published_params
    active: int | None
    citation: str
    unit: int | None = None  # the source rounds to this (None: compare within 1%)
    active_counts: str = "all"  # "all" | "no_embeddings" (the figure leaves out embedding and lm_head)


CASES = [
    # ----------------------------------------------------------------------------- DeepSeek (quantized)
    # Ours: 671.03B / 37.55B (V3.1), 671.88B / 38.40B (V3.2, + the DSA indexer): main model, MTP layer not counted.
    Case("nvidia/DeepSeek-V3.1-NVFP4", 671 * B, 37 * B, f"{DSV31} (the model it quantizes)", B),
    # The V3.2 active figure is V3's "37B", which predates the DSA indexer; ours counts the indexer (dense, so all of it
    # is active: 38.40B), so the active count is checked against V3.1's below instead.
    Case("nvidia/DeepSeek-V3.2-NVFP4", 671 * B, None, f"{DSV32} (the model it quantizes)", B),
    # ----------------------------------------------------------------------------- GLM-5 family: 743.91B / 39.88B
    Case("zai-org/GLM-5-FP8", 744 * B, 40 * B, f"{GLM} (the model it quantizes)", B, "no_embeddings"),
    Case("zai-org/GLM-5.1", 744 * B, 40 * B, f"{GLM} (GLM-5.1 has GLM-5's geometry)", B, "no_embeddings"),
    Case("zai-org/GLM-5.1-FP8", 744 * B, 40 * B, f"{GLM} (GLM-5.1 has GLM-5's geometry)", B, "no_embeddings"),
    Case("nvidia/GLM-5-NVFP4", 744 * B, 40 * B, f"{GLM} (the model it quantizes)", B, "no_embeddings"),
    # ----------------------------------------------------------------------------- Qwen3.5 (quantized)
    # Ours counts the vision tower (vllm's qwen3_5 reuses the Qwen3-VL tower, 0.46B here) but not the MTP layer,
    # which vLLM loads only for speculative decoding: 396.30B / 17.30B and 122.26B / 9.92B. "17B" and "10B activated"
    # are rounded figures, so the active counts are compared within one unit of the last digit.
    Case("nvidia/Qwen3.5-397B-A17B-NVFP4", 397 * B, 17 * B, f"{Q397} (the model it quantizes)", B),
    Case("nvidia/Qwen3.5-122B-A10B-NVFP4", 122 * B, 10 * B, Q122, B),
    # Kimi K2.5 (1026.41B / 32.86B): the card's "1T / 32B" is rounded and the planner counts no MoonViT tower for
    # these configs, so their records carry no published count; test_kimi_k25_language_model_is_kimi_k2s checks them.
    # ----------------------------------------------------------------------------- MiniMax: 228.69B / 9.80B
    Case("nvidia/MiniMax-M2.5-NVFP4", 230 * B, 10 * B, f"{MINIMAX} (the model it quantizes)", B, "no_embeddings"),
    # ----------------------------------------------------------------------------- Nemotron 3 (quantized)
    # Ours: 31.58B / 3.58B (Nano), 120.67B / 12.77B (Super): both within 1% of the README's figures.
    Case("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4", 31_600_000_000, 3_600_000_000,
         f"{NEMO}: '31.6B total / 3.6B active' (the BF16 model it quantizes)"),
    Case("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8", 120_600_000_000, 12_700_000_000,
         f"{NEMO}: '120.6B total / 12.7B active'"),
    Case("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4", 120_600_000_000, 12_700_000_000,
         f"{NEMO}: '120.6B total / 12.7B active'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.model for c in CASES])
def test_total_and_active_match_the_published_figures(case: Case) -> None:
    arch = load_catalog_dir(case.model)
    total = total_params(arch)
    assert close(total, case.total, case.unit), f"{case.model}: total {total:,} vs {case.total:,} ({case.citation})"
    assert arch.is_moe
    if case.active is None:
        return
    active = active_params(arch) - (embeddings(arch) if case.active_counts == "no_embeddings" else 0)
    unit = case.unit if case.unit != 1000 * B else B  # Kimi: "1T" total, "32B" active
    assert close(active, case.active, unit), f"{case.model}: active {active:,} vs {case.active:,} ({case.citation})"


def test_deepseek_v32_adds_only_the_dense_indexer() -> None:
    """V3.2 is V3.1 plus the DSA indexer on every layer: the extra parameters are all active (the indexer runs for
    every token), and the rest matches V3.1, whose active count is within one unit of the published 37B."""
    v31, v32 = load_catalog_dir("nvidia/DeepSeek-V3.1-NVFP4"), load_catalog_dir("nvidia/DeepSeek-V3.2-NVFP4")
    extra = total_params(v32) - total_params(v31)
    assert 0 < extra < 0.01 * total_params(v31)
    assert active_params(v32) - active_params(v31) == extra


# Kimi-K2's safetensors total (model_inspector report, file ref 62698259723): FP8 weights + 63.5M fp32 scales.
KIMI_K2_SAFETENSORS = 1_026_470_731_056


@pytest.mark.parametrize("model", ["moonshotai/Kimi-K2.5", "nvidia/Kimi-K2.5-NVFP4"])
def test_kimi_k25_language_model_is_kimi_k2s(model: str) -> None:
    """K2.5's text_config has K2's geometry, so its language model must match K2's published exact total within 1%
    (ours 1,026,408,232,448; the difference is K2's fp32 block scales). The MoonViT tower (~400M) comes on top."""
    arch = load_catalog_dir(model)
    assert arch.is_multimodal
    ours = text_params(arch)
    assert abs(ours - KIMI_K2_SAFETENSORS) / KIMI_K2_SAFETENSORS < 0.01, ours


def _records() -> dict[str, dict]:
    out = {}
    for line in (CATALOG_DIR / "sources" / "batch-d.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("- {"):
            rec = json.loads(line[2:])
            out[rec["id"]] = rec
    return out


def test_cases_are_batch_d_models() -> None:
    """Every case names a batch-D model once, each recorded published count has a case with the same figure, and
    each record's note cites a source."""
    records = _records()
    ids = [c.model for c in CASES]
    assert len(ids) == len(set(ids)) and set(ids) <= set(records)
    assert {i for i, r in records.items() if r["published_params"]} == set(ids)
    for case in CASES:
        assert records[case.model]["published_params"] == case.total, case.model
        assert "[source:" in records[case.model]["published_params_note"], case.model


@pytest.mark.parametrize("model", sorted(_records()))
def test_quantized_checkpoints_read_their_quantization(model: str) -> None:
    """A ModelOpt checkpoint's method comes from hf_quant_config.json (or its config's quantization_config); the
    BF16 ones (GLM-5.1, MiMo, Step-3.7-Flash) have none."""
    arch = load_catalog_dir(model)
    method = arch.quant.method if arch.quant is not None else None
    has_hf_quant = (CATALOG_DIR / model / "hf_quant_config.json").is_file()
    if has_hf_quant or model.startswith("nvidia/"):
        assert method is not None and method.startswith("modelopt"), (model, method)
    elif model.endswith("-FP8"):
        assert method == "fp8", (model, method)
    elif model == "moonshotai/Kimi-K2.5":
        assert method == "compressed-tensors"
    else:
        assert method is None, (model, method)
