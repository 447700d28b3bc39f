"""planner/features/multimodal.py: encoder budget, dummy items and the profile-run encoder term, checked against
hand calculations from vLLM's code (vllm/multimodal/budget.py, v1/core/encoder_cache_manager.py,
v1/worker/gpu_model_runner.py profile_run, the per-model processors) and logged numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.features.multimodal import (
    effective_limits,
    encoder_cache_tokens,
    family_of,
    load_mm_encoders,
    max_item,
    mm_limits_problems,
    mm_profile,
    mm_profile_bytes,
    tower_skipped,
)
from planner.models.arch import parse_config

ROOT = Path(__file__).resolve().parents[3]
CATALOG = ROOT / "planner" / "models" / "catalog"
LAUNCHES = ROOT / "tests" / "data" / "calibration" / "vllm_launches.json"
DATA = load_mm_encoders()
PARAMS = {"mm_encoder_hidden_factor": 4.25}


def _catalog(model: str):
    return parse_config(json.loads((CATALOG / model / "config.json").read_text()), name=model, source="catalog")


def _calibration(model: str):
    cfg = json.loads(LAUNCHES.read_text())["model_configs"][model]["raw_config"]
    return parse_config(cfg, name=model, source="calibration")


GEMMA = _catalog("google/gemma-3-27b-it")
QWEN = _catalog("Qwen/Qwen2.5-VL-7B-Instruct")
MISTRAL = _catalog("mistralai/Mistral-Small-3.2-24B-Instruct-2506")
LLAMA4 = _calibration("meta-llama/Llama-4-Scout-17B-16E-Instruct")
TEXT = _catalog("meta-llama/Llama-3.1-8B-Instruct")


def _profile(arch, limits=None, *, version="0.19.0", t=8192, mml=8192, s=1024, tp=1, **kw):
    return mm_profile(arch, limits, max_num_batched_tokens=t, max_model_len=mml, max_num_seqs=s, act_bytes=2, tp=tp,
                      version=version, params=PARAMS, data=DATA, **kw)


def test_families():
    assert [family_of(a) for a in (GEMMA, QWEN, MISTRAL, LLAMA4, TEXT)] == [
        "gemma3", "qwen2_5_vl", "pixtral", "llama4", None]


def test_gemma3_item_and_profile():
    # 896 / 14 = 64 -> 4096 SigLIP patches, pooled to mm_tokens_per_image = 256; pixels 3 x 896 x 896
    item = max_item(GEMMA, "image", max_model_len=8192, version="0.19.0", data=DATA)
    assert (item.embeds, item.vit_tokens, item.input_values) == (256, 4096, 2_408_448)
    p = _profile(GEMMA)
    assert p.items == 8192 // 256 == 32  # budget max(8192, 256) // 256; 1024 seqs x min(999, 8192 // 256) is larger
    # held: 32 x 256 x 5376 (text hidden) x 2 B outputs + 32 x 2,408,448 x 2 B bf16 pixel values
    assert p.held_bytes == 32 * 256 * 5376 * 2 + 32 * 2_408_448 * 2 == 242_221_056
    # SigLIP MLP is fc1 -> gelu -> fc2 (2 matrices): 32 x 4096 tokens x (2 x 4304 + 4.25 x 1152) x 2 B + inputs
    assert p.encoder_peak_bytes == int(131072 * (2 * 4304 + 4.25 * 1152) * 2 + 32 * 2_408_448 * 2)


def test_gemma3_v019_log_gap():
    # v0.19.0 H100 log: peak activation 3.99 GiB. The decoder sampler term alone (0.15 GiB + 14.2 B x 1024 x
    # 262208 logits, the pack's fit on text models) is 3.70 GiB; the held encoder batch closes most of the gap.
    decoder = int((0.15 + 14.2 * 1024 * 262208 / 2**30) * 2**30)
    extra = mm_profile_bytes(decoder, _profile(GEMMA))
    assert extra == 242_221_056  # the held outputs + inputs bind: the encoder forward (3.44 GiB) stays below
    assert abs((decoder + extra) / 2**30 - 3.99) < 0.07


def test_qwen25vl_image_and_video_tokens():
    # max_pixels 12845056 = 3584^2 -> (3584 / 14)^2 = 65536 patches, merged 2x2 -> 16384 embeddings
    img = max_item(QWEN, "image", max_model_len=128000, version="0.8.5", data=DATA)
    assert (img.embeds, img.vit_tokens, img.input_values) == (16384, 65536, 65536 * 3 * 2 * 14 * 14)
    # before the video processor: 14 frames at the image maximum fit 128000 -> 7 x 16384; vLLM PR #12604 logged
    # "{'image': 16384, 'video': 114688}" at max_model_len 128000
    vid = max_item(QWEN, "video", max_model_len=128000, version="0.8.5", data=DATA)
    assert vid.embeds == 114688
    # video processor (768 x 28 x 28 px -> a 756 px square, 27^2 = 729 tokens per 2 frames), capped at 32 frames:
    # 16 x 729 = 11664 < 16384, so the image is the largest item and the budget is 16384 (vllm#34209's log)
    vid33 = max_item(QWEN, "video", max_model_len=128000, version="0.33.0", data=DATA)
    assert vid33.embeds == 16 * 729
    assert encoder_cache_tokens(QWEN, None, max_num_batched_tokens=8192, max_model_len=128000, version="0.33.0",
                                data=DATA) == 16384


def test_qwen25vl_profile_one_max_image():
    p = _profile(QWEN, mml=128000, version="0.33.0")
    assert (p.item.modality, p.items, p.encoder_budget_tokens) == ("image", 1, 16384)
    assert p.held_bytes == 16384 * 3584 * 2 + 65536 * 1176 * 2
    # gated SiLU MLP (3 matrices of 3420) + 4.25 x 1280 per token, 65536 tokens, bf16, + pixel patches
    assert p.encoder_peak_bytes == int(65536 * (3 * 3420 + 4.25 * 1280) * 2 + 65536 * 1176 * 2)


def test_mistral_small_profile():
    # longest edge 1540 / 14 = 110 -> 12100 patches, 2x2 merge -> 55^2 = 3025 embeddings; 8192 // 3025 = 2 items
    p = _profile(MISTRAL)
    assert (p.item.embeds, p.item.vit_tokens, p.items) == (3025, 12100, 2)
    assert p.held_bytes == 2 * 3025 * 5120 * 2 + 2 * 3 * 1540 * 1540 * 2


def test_llama4_tiles():
    # 16 tiles (image_processor_config.max_patches) + 1 global; (336 / 14)^2 = 576 patches x 0.5^2 = 144 per tile
    p = _profile(LLAMA4, tp=4)
    assert (p.item.embeds, p.item.vit_tokens) == (17 * 144, 17 * 577)
    assert p.items == 8192 // 2448 == 3
    assert p.held_bytes == 3 * 2448 * 5120 * 2 + 3 * 17 * 3 * 336 * 336 * 2
    # weights mode (default): the ViT MLP is TP-sharded; data mode: whole MLP, ceil(3 / 4) = 1 item per rank
    data = _profile(LLAMA4, tp=4, encoder_tp_mode="data")
    assert data.encoder_peak_bytes - 3 * 17 * 3 * 336 * 336 * 2 == int(9809 * (2 * 5632 + 4.25 * 1408) * 2)
    weights = _profile(LLAMA4, tp=4)
    assert weights.encoder_peak_bytes - 3 * 17 * 3 * 336 * 336 * 2 == int(3 * 9809 * (2 * 5632 / 4 + 4.25 * 1408) * 2)


def test_limit_zero_and_skip_mean_no_encoder_term():
    off = {"image": 0, "video": 0}
    assert _profile(QWEN, off) is None
    assert mm_profile_bytes(10**9, _profile(QWEN, off)) == 0
    assert encoder_cache_tokens(QWEN, off, max_num_batched_tokens=8192, max_model_len=8192, version="0.19.0",
                                data=DATA) == 0
    assert tower_skipped(QWEN, off, "0.19.0", DATA) and not tower_skipped(QWEN, {"video": 0}, "0.19.0", DATA)
    assert _profile(GEMMA, skip_mm_profiling=True) is None
    assert _profile(GEMMA, version="0.6.4") is None  # V0: encoder inside the dummy forward, not modelled
    assert _profile(TEXT) is None


def test_video_off_profiles_the_image():
    p = _profile(QWEN, {"video": 0}, mml=128000, version="0.8.5")
    assert p.item.modality == "image"
    assert _profile(QWEN, None, mml=128000, version="0.8.5").item.embeds == 114688  # video wins when on


def test_limit_defaults_per_version():
    assert effective_limits(GEMMA, None, "0.6.4", DATA) == {"image": 1}
    assert effective_limits(GEMMA, None, "0.19.0", DATA) == {"image": 999}
    assert effective_limits(QWEN, {"image": {"count": 2}}, "0.33.0", DATA) == {"image": 2, "video": 999}


def test_per_prompt_cap_from_011():
    # 0.11+: per prompt min(limit, max_model_len // tokens) -> with 1 sequence and max_model_len 512 only 2 items
    assert _profile(GEMMA, s=1, mml=512, version="0.19.0").items == 2
    assert _profile(GEMMA, s=1, mml=512, version="0.8.5").items == 32  # 0.8.5: 1 seq x 999 items, budget 32


def test_encoder_bound_case():
    p = _profile(QWEN, mml=128000, version="0.33.0")
    assert mm_profile_bytes(0, p) == p.encoder_peak_bytes  # a decoder peak below the encoder forward


@pytest.mark.parametrize(("arch", "limits", "needle"), [
    (GEMMA, {"video": 1}, "video: google/gemma-3-27b-it takes image only"),
    (GEMMA, {"image": -1}, "image: -1 is negative"),
    (GEMMA, {"image": "two"}, "image: expected a whole number"),
    (TEXT, {"image": 1}, "takes no multimodal input"),
    (GEMMA, {"image": {"count": 1}}, "needs vLLM 0.11.0"),
])
def test_problems(arch, limits, needle):
    msgs = mm_limits_problems(arch, limits, "0.8.5", DATA)
    assert any(needle in m and m.startswith("--limit-mm-per-prompt") for m in msgs), msgs


def test_no_problems():
    assert mm_limits_problems(QWEN, {"image": 4, "video": 0}, "0.33.0", DATA) == []
    assert mm_limits_problems(GEMMA, None, "0.33.0", DATA) == []
