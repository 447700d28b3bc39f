"""planner/features/speculative.py: `--speculative-config` validation per vLLM version, draft weights and KV per
GPU, and the speed model, checked against hand calculations from vLLM's code (vllm/config/speculative.py,
vllm/v1/spec_decode/llm_base_proposer.py, model_executor/models/deepseek_mtp.py and llama_eagle3.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from planner.errors import InputError
from planner.features import SpecDecode
from planner.features.speculative import (
    acceptance_from_length,
    break_even_batch,
    decode_query_len,
    draft_kv,
    draft_weights_bytes,
    expected_tokens_per_step,
    known_version,
    lookahead_slots,
    parse_speculative,
    speedup,
)
from planner.kvcache import kv_layout
from planner.models.arch import ModelArch, parse_config
from planner.models.params import mtp_layer_count
from planner.models.sources import load_catalog_dir

ROOT = Path(__file__).resolve().parents[3]
EAGLE3_DIR = ROOT / "tests" / "data" / "speculative" / "eagle3-llama3.1-8b"
PARAMS = {"spec_accept_rate_mtp": 0.85, "spec_accept_rate_eagle": 0.6, "spec_accept_rate_eagle3": 0.7,
          "spec_accept_rate_draft_model": 0.6, "spec_accept_rate_ngram": 0.3, "spec_step_overhead_ms": 0.3,
          "spec_draft_pass_overhead_ms": 0.15, "decode_bw_efficiency": 0.8, "compute_mfu": 0.5}


@pytest.fixture(scope="module")
def dsv3() -> ModelArch:
    return load_catalog_dir("deepseek-ai/DeepSeek-V3")


@pytest.fixture(scope="module")
def llama8b() -> ModelArch:
    return load_catalog_dir("meta-llama/Llama-3.1-8B-Instruct")


@pytest.fixture(scope="module")
def eagle3() -> ModelArch:
    return parse_config(json.loads((EAGLE3_DIR / "config.json").read_text()), name=str(EAGLE3_DIR))


def _loader(**archs: ModelArch):
    def load(ref: str) -> ModelArch:
        if ref in archs:
            return archs[ref]
        raise InputError(f"unknown model {ref}")
    return load


# ------------------------------------------------------------------------------------------------- parse


def test_mtp_spellings_map_to_mtp(dsv3: ModelArch) -> None:
    for method in ("deepseek_mtp", "mtp"):
        spec = parse_speculative({"method": method, "num_speculative_tokens": 1}, target=dsv3, version="0.33.0",
                                 load_draft=_loader())
        assert spec.method == "mtp" and spec.num_speculative_tokens == 1 and spec.draft is None
    # k > n_predict must be a multiple of it (1 here: anything goes); k defaults to n_predict
    spec = parse_speculative({"method": "mtp"}, target=dsv3, version="0.33.0", load_draft=_loader())
    assert spec.num_speculative_tokens == 1


def test_method_names_follow_the_version(dsv3: ModelArch) -> None:
    glm = load_catalog_dir("zai-org/GLM-4.5-Air")
    # 0.11.0's SpeculativeMethod Literal has no glm4_moe_mtp (only MTP_MODEL_TYPES did): spell it "mtp"
    with pytest.raises(InputError, match=r"--speculative-config: method='glm4_moe_mtp'"):
        parse_speculative({"method": "glm4_moe_mtp", "num_speculative_tokens": 1}, target=glm, version="0.11.0",
                          load_draft=_loader())
    assert parse_speculative({"method": "glm4_moe_mtp", "num_speculative_tokens": 1}, target=glm, version="0.15.0",
                             load_draft=_loader()).method == "mtp"
    # 0.8.5: no MTP method; a DeepSeek-V3 target with num_speculative_tokens and no model drafts with its MTP
    assert parse_speculative({"num_speculative_tokens": 1}, target=dsv3, version="0.8.5",
                             load_draft=_loader()).method == "mtp"
    # 0.6.4 has no --speculative-config at all
    with pytest.raises(InputError, match=r"not in vLLM 0\.6\.4"):
        parse_speculative({"method": "ngram", "num_speculative_tokens": 2}, target=dsv3, version="0.6.4",
                          load_draft=_loader())
    assert known_version("0.30.1") == "0.29.0" and known_version("0.33.0") == "0.33.0"


def test_parse_errors(dsv3: ModelArch, llama8b: ModelArch) -> None:
    cases = [
        ({"method": "ngram", "num_speculative_tokens": 0}, "num_speculative_tokens=0"),
        ({"method": "ngram", "num_speculative_tokens": 2, "bogus": 1}, "bogus=1: unknown key"),
        ({"method": "ngram", "num_speculative_tokens": 2, "tensor_parallel_size": 2}, "draft_tensor_parallel_size"),
        ({"method": "mtp", "num_speculative_tokens": 1}, "has no MTP layers"),
        ({"method": "eagle3", "num_speculative_tokens": 3}, "model=None"),
        ({"method": "medusa", "num_speculative_tokens": 3}, "method='medusa'"),  # removed in 0.33
        ({"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 6, "prompt_lookup_max": 3},
         "prompt_lookup_min=6"),
        ({"method": "ngram"}, "num_speculative_tokens=None"),
        ({"model": "eagle3", "method": "eagle3", "num_speculative_tokens": 3, "draft_tensor_parallel_size": 3},
         "draft_tensor_parallel_size=3"),
    ]
    for config, message in cases:
        with pytest.raises(InputError, match="--speculative-config") as err:
            parse_speculative(config, target=llama8b, version="0.33.0", tp=2,
                              load_draft=_loader(eagle3=parse_config(json.loads(
                                  (EAGLE3_DIR / "config.json").read_text()), name="eagle3")))
        assert message in str(err.value), (config, str(err.value))
        assert "\n" not in str(err.value)
    # a draft model with another vocabulary is refused (verify_equal_vocab_size_if_draft_model)
    qwen = load_catalog_dir("Qwen/Qwen3-0.6B")
    with pytest.raises(InputError, match="vocab_size"):
        parse_speculative({"method": "draft_model", "model": "q", "num_speculative_tokens": 4}, target=llama8b,
                          version="0.33.0", load_draft=_loader(q=qwen))
    # the V1 draft-model proposer needs draft TP == target TP (0.15+)
    small = load_catalog_dir("meta-llama/Llama-3.2-1B-Instruct")
    with pytest.raises(InputError, match="DraftModelProposer"):
        parse_speculative({"model": "s", "num_speculative_tokens": 4, "draft_tensor_parallel_size": 1},
                          target=llama8b, version="0.33.0", tp=2, load_draft=_loader(s=small))


def test_method_detected_from_the_draft(llama8b: ModelArch, eagle3: ModelArch) -> None:
    small = load_catalog_dir("meta-llama/Llama-3.2-1B-Instruct")
    spec = parse_speculative({"model": "s", "num_speculative_tokens": 4}, target=llama8b, version="0.33.0",
                             load_draft=_loader(s=small))
    assert spec.method == "draft_model" and spec.draft is small
    spec = parse_speculative({"model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", "num_speculative_tokens": 3},
                             target=llama8b, version="0.33.0",
                             load_draft=_loader(**{"yuhuili/EAGLE3-LLaMA3.1-Instruct-8B": eagle3}))
    assert spec.method == "eagle3"
    spec = parse_speculative({"model": "ngram", "num_speculative_tokens": 3}, target=llama8b, version="0.33.0",
                             load_draft=_loader())
    assert spec.method == "ngram" and spec.draft is None


# ------------------------------------------------------------------------------------------------ memory


def test_deepseek_v3_mtp_layer_bytes_tp8(dsv3: ModelArch) -> None:
    """One MTP module (vllm deepseek_mtp.py DeepSeekMultiTokenPredictorLayer) on one of 8 GPUs, FP8 linears at
    1 B/param, bf16 rest; embed_tokens and shared_head.head are the target's (PP = 1)."""
    h, tp = 7168, 8
    quantized = (1536 * h + 576 * h  # fused q_a + kv_a (replicated)
                 + 128 * 192 * 1536 // tp  # q_b
                 + 128 * 256 * 512 // tp  # kv_b
                 + h * 128 * 128 // tp  # o_proj
                 + 3 * 2048 * h * 256 // tp  # 256 routed experts at I/8
                 + 3 * 2048 * h // tp)  # shared expert
    bf16 = (1536 + 512  # q_a / kv_a layernorms
            + 256 * h  # router gate
            + 2 * h  # input / post-attention norms
            + 3 * h  # enorm, hnorm, shared_head.norm
            + 2 * h * h  # eh_proj: nn.Linear(2H, H), replicated, unquantized
            + 512 * 128 // tp * 256)  # W_UK_T / W_UV dequantized copies of the FP8 kv_b
    fp32 = 256  # e_score_correction_bias
    expected = quantized * 1 + bf16 * 2 + fp32 * 4
    assert expected == 1_664_887_808
    spec = SpecDecode(method="mtp", num_speculative_tokens=1)
    assert draft_weights_bytes(spec, dsv3, tp=tp, act_bytes=2, linear_bytes_per_param=1.0) == expected
    # PP > 1: the drafter loads its own embedding (V_pad / TP x H bf16)
    own = draft_weights_bytes(spec, dsv3, tp=tp, act_bytes=2, linear_bytes_per_param=1.0, pp=2)
    assert own - expected == 129280 // tp * h * 2


def test_eagle3_head_bytes_llama8b(llama8b: ModelArch, eagle3: ModelArch) -> None:
    """llama_eagle3.py: layer 0 takes 2H into q/k/v; fc = ReplicatedLinear(3 x 4096 -> 4096); own lm_head of
    draft_vocab_size 32000 rows; d2t int64 map; embed_tokens shared with the target."""
    h = 4096
    linear = 32 * 128 * 2 * h + 2 * 8 * 128 * 2 * h + h * h + 3 * 14336 * h + 3 * h * h
    other = 3 * h + h + 32000 * h
    expected = (linear + other) * 2 + 32000 * 8
    assert expected == 849_635_328  # ~810 MiB, the published head's ~811 MB
    spec = SpecDecode(method="eagle3", num_speculative_tokens=3, draft=eagle3)
    assert draft_weights_bytes(spec, llama8b, tp=1, act_bytes=2, linear_bytes_per_param=2) == expected
    # TP 2: column/row-parallel parts and the lm_head halve, fc, norms and d2t stay whole
    tp2 = draft_weights_bytes(spec, llama8b, tp=2, act_bytes=2, linear_bytes_per_param=2)
    split = (32 * 128 * 2 * h + 2 * 8 * 128 * 2 * h + h * h + 3 * 14336 * h) // 2 + 3 * h * h
    assert tp2 == (split + 4 * h + 16000 * h) * 2 + 32000 * 8


def test_draft_model_and_ngram_bytes(llama8b: ModelArch) -> None:
    small = load_catalog_dir("meta-llama/Llama-3.2-1B-Instruct")
    spec = SpecDecode(method="draft_model", num_speculative_tokens=4, draft=small)
    got = draft_weights_bytes(spec, llama8b, tp=1, act_bytes=2, linear_bytes_per_param=2)
    assert 2.3e9 < got < 2.6e9  # 1.236B params (tied embeddings) in bf16, own embedding
    assert draft_weights_bytes(SpecDecode(method="ngram", num_speculative_tokens=3), llama8b, tp=1, act_bytes=2,
                               linear_bytes_per_param=2) == 0


def test_draft_kv_and_block(dsv3: ModelArch, llama8b: ModelArch, eagle3: ModelArch) -> None:
    # DeepSeek-V3 MTP: one MLA layer of (512 + 64) latents, not split over TP
    kv = draft_kv(SpecDecode(method="mtp", num_speculative_tokens=1), dsv3, tp=8, kv_bytes=2)
    assert (kv.layers, kv.bytes_per_token) == (1, 576 * 2)
    base = kv_layout(dsv3, range(61), tp=8, kv_bytes=2, block_size=64, hybrid_manager=True)
    grown = kv_layout(dsv3, range(61), tp=8, kv_bytes=2, block_size=64, hybrid_manager=True,
                      extra_layers=kv.layers, extra_bytes_per_token=kv.bytes_per_token_per_layer)
    assert base.bytes_per_block == 61 * 64 * 1152 and grown.bytes_per_block == 62 * 64 * 1152
    assert grown.kv_bytes_per_token == 62 * 1152
    # EAGLE-3 head on Llama-3.1-8B at TP 2: 8/2 KV heads x (128 + 128) x 2 B = 2048 B per token, the target's page
    kv = draft_kv(SpecDecode(method="eagle3", num_speculative_tokens=3, draft=eagle3), llama8b, tp=2, kv_bytes=2)
    assert (kv.layers, kv.bytes_per_token) == (1, 2048)
    # a draft layer with another page rides in the same block ids (UniformTypeKVCacheSpecs): 32 x 16 x 2048 + 16 x 512
    other = kv_layout(llama8b, range(32), tp=2, kv_bytes=2, block_size=16, hybrid_manager=True, extra_layers=1,
                      extra_bytes_per_token=512)
    assert other.bytes_per_block == 32 * 16 * 2048 + 16 * 512 and other.kv_bytes_per_token == 32 * 2048 + 512
    assert kv_layout(llama8b, range(32), tp=2, kv_bytes=2, block_size=16, hybrid_manager=True).bytes_per_block \
        == 32 * 16 * 2048  # speculation off: unchanged
    assert draft_kv(SpecDecode(method="ngram", num_speculative_tokens=3), llama8b, tp=1, kv_bytes=2).layers == 0


def test_mtp_layer_counts() -> None:
    assert mtp_layer_count(load_catalog_dir("Qwen/Qwen3-Next-80B-A3B-Instruct")) == 1  # key absent: vLLM's 1
    assert mtp_layer_count(load_catalog_dir("Qwen/Qwen3.5-27B")) == 1  # mtp_num_hidden_layers
    assert mtp_layer_count(load_catalog_dir("zai-org/GLM-4.5-Air")) == 1
    assert mtp_layer_count(load_catalog_dir("meta-llama/Llama-3.1-8B-Instruct")) == 0


def test_lookahead_and_query_len(eagle3: ModelArch) -> None:
    e = SpecDecode(method="eagle3", num_speculative_tokens=3, draft=eagle3)
    assert lookahead_slots(e) == 3 and decode_query_len(e) == 4
    assert lookahead_slots(SpecDecode(method="ngram", num_speculative_tokens=5)) == 0
    assert lookahead_slots(None) == 0 and decode_query_len(None) == 1
    d = SpecDecode(method="draft_model", num_speculative_tokens=4, draft=eagle3)
    assert lookahead_slots(d, "0.11.0") == 0 and lookahead_slots(d, "0.15.0") == 4


# ------------------------------------------------------------------------------------------------- speed


def test_expected_tokens_per_step() -> None:
    assert expected_tokens_per_step(0.0, 3) == 1.0
    assert expected_tokens_per_step(1.0, 3) == 4.0
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1.75)  # 1 + 0.5 + 0.25
    a = acceptance_from_length(2.9, 3)
    assert expected_tokens_per_step(a, 3) == pytest.approx(2.9, abs=1e-9)


def test_gain_falls_with_batch_and_breaks_even() -> None:
    """A roofline-shaped target step (a weight read of 7 ms plus 0.05 ms per query token, compute-bound past
    ~140 tokens) and a cheap drafter: speculation pays at batch 1, less and less with concurrency, then not."""
    def target(tokens: int) -> float:
        return max(7.0, 0.05 * tokens) + 0.002 * tokens

    def draft(batch: int) -> float:
        return 0.4 + 0.001 * batch

    spec = SpecDecode(method="mtp", num_speculative_tokens=3)
    gains = [speedup(target, b, spec, draft, PARAMS) for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)]
    assert gains[0] > 1.5
    assert all(x >= y for x, y in itertools.pairwise(gains))
    fine = [speedup(target, b, spec, draft, PARAMS) for b in range(1, 300)]
    assert all(x >= y - 1e-12 for x, y in itertools.pairwise(fine))
    be = break_even_batch(target, spec, draft, PARAMS)
    assert be is not None and 8 < be < 512
    assert speedup(target, be, spec, draft, PARAMS) <= 1.0 < speedup(target, be - 1, spec, draft, PARAMS)
    ngram = SpecDecode(method="ngram", num_speculative_tokens=3)  # no draft passes, low acceptance
    assert speedup(target, 1, ngram, draft, PARAMS) > 1.0
