"""Memory accounting against hand calculations (vllm-accounting.md 7.1) and vLLM's own logs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from planner.memory import MemoryInputs, account
from planner.models.arch import ModelArch
from planner.models.params import pp_layer_split, rank_weights, total_params
from planner.policy.loader import load_packset

GiB = 2**30
H100_CUDA_BYTES = 85_017_493_504  # torch.cuda.mem_get_info total on H100 80GB HBM3 (vllm-accounting.md section 0)

# Llama-3.1-8B-Instruct geometry, written by hand from its config.json.
LLAMA_8B = ModelArch(
    name="meta-llama/Llama-3.1-8B-Instruct", model_type="llama", architectures=("LlamaForCausalLM",),
    hidden_size=4096, num_layers=32, num_attention_heads=32, num_kv_heads=8, head_dim=128, v_head_dim=128,
    intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, max_position_embeddings=131072,
    config_dtype="bfloat16", layer_types=("full_attention",) * 32,
)


def params(**over: float) -> dict:
    p = load_packset(use_env=False).param_values()
    p.update(over)
    return p


def inputs(**over) -> MemoryInputs:
    base = dict(total_bytes=H100_CUDA_BYTES, tp=1, pp=1, dtype="bfloat16", linear_bytes_per_param=2.0,
                kv_cache_dtype="auto", gpu_memory_utilization=0.9, max_model_len=131072, max_num_seqs=1024,
                max_num_batched_tokens=8192, block_size=16, enforce_eager=False, scales={})
    base.update(over)
    return MemoryInputs(**base)


def test_llama8b_param_count_matches_published() -> None:
    """8,030,261,248 parameters (KerasHub preset metadata, model-configs/INDEX.md)."""
    assert total_params(LLAMA_8B) == 8_030_261_248


def test_llama8b_weights_match_spec_hand_calculation() -> None:
    """vllm-accounting.md 7.1: 8,030,261,248 x 2 B + 32 MiB rope cache = 16,094,076,928 B ("took 14.99 GiB")."""
    rw = rank_weights(LLAMA_8B, tp=1, pp=1, stage=0, act_bytes=2, linear_bytes_per_param=2.0,
                      rope_cache_bytes=131072 * 128 * 2)
    assert rw.total_bytes == 16_094_076_928


def test_kv_blocks_follow_spec_worked_example() -> None:
    """vllm-accounting.md 7.1 with its assumed 2.35 GiB overhead: 27,608 blocks, 441,728 tokens, 3.37x."""
    overhead_gib = 2_523_293_286 / GiB  # the example's 2.35 GiB, in exact bytes
    p = params(activation_base_gib=0.0, activation_sampler_bytes_per_logit=0.0, activation_hidden_factor=0.0,
               non_torch_gib_tp1=overhead_gib, cuda_graph_base_gib=0.0, cuda_graph_per_layer_gib=0.0,
               budget_ceil=True, cuda_graph_in_budget=True)
    m = account(LLAMA_8B, inputs(scales={"activation_peak_bytes": 0.0}), p)  # the example lumps it into 2.35 GiB
    assert m.budget_bytes == 76_515_744_154
    assert m.bytes_per_block == 2_097_152
    assert m.num_blocks == 27_608
    assert m.kv_cache_tokens == 441_728
    assert round(m.max_concurrency, 2) == 3.37
    assert m.fits


@pytest.mark.parametrize(
    ("max_model_len", "tp", "logged_weights_gib", "logged_kv_gib", "logged_tokens"),
    [
        # vLLM 0.19.0 DEBUG logs, llm-d-planner PR #205 (shared/calibration/vllm_launches.json), util 0.95.
        pytest.param(2048, 1, 14.99, 58.11, 476_016, id="tp1-2048"),
        pytest.param(8192, 4, 3.77, 67.44, 2_209_792, id="tp4-8192"),
    ],
)
def test_llama8b_v019_matches_logged(max_model_len: int, tp: int, logged_weights_gib: float, logged_kv_gib: float,
                                     logged_tokens: int) -> None:
    """Weights within 1%, KV bytes and tokens within 2% of what vLLM 0.19 printed on an H100."""
    p = params(cuda_graph_in_budget=False)  # 0.19 captures graphs outside the budget (baseline rule)
    m = account(LLAMA_8B, inputs(tp=tp, gpu_memory_utilization=0.95, max_model_len=max_model_len), p)
    assert abs(m.weights_bytes / GiB - logged_weights_gib) / logged_weights_gib < 0.01
    assert abs(m.kv_cache_bytes / GiB - logged_kv_gib) / logged_kv_gib < 0.02
    engine_tokens = m.kv_cache_tokens  # TP shards KV heads: the engine-wide capacity equals one rank's
    assert abs(engine_tokens - logged_tokens) / logged_tokens < 0.02


def test_budget_equals_sum_of_parts() -> None:
    """budget = weights + activation + non-torch + graphs (when in budget) + KV, for a feasible plan."""
    m = account(LLAMA_8B, inputs(), params())
    parts = m.weights_bytes + m.activation_peak_bytes + m.non_torch_bytes + m.cuda_graph_bytes + m.kv_cache_bytes
    assert parts == m.budget_bytes


def test_fp8_kv_doubles_tokens() -> None:
    """An FP8 KV cache holds twice the tokens of bf16, less block rounding."""
    bf16 = account(LLAMA_8B, inputs(), params())
    fp8 = account(LLAMA_8B, inputs(kv_cache_dtype="fp8"), params())
    assert abs(fp8.kv_cache_tokens - 2 * bf16.kv_cache_tokens) <= 2 * 16


def test_pp_split_matches_vllm() -> None:
    """get_pp_indices: base N // PP each, the remainder one each to stages PP-2, PP-3, ... (vllm-accounting.md 2.2)."""
    assert [len(r) for r in pp_layer_split(32, 3)] == [11, 11, 10]  # base 10, +1 to stages 1 and 0
    assert [len(r) for r in pp_layer_split(33, 4)] == [8, 8, 9, 8]  # base 8, +1 to stage 2
    assert [len(r) for r in pp_layer_split(32, 2)] == [16, 16]


def test_oversized_model_does_not_fit() -> None:
    """Weights larger than the budget: weights_fit and fits are false, KV is zero."""
    m = account(LLAMA_8B, inputs(total_bytes=12 * GiB), params())
    assert not m.weights_fit and not m.fits and m.kv_cache_bytes == 0


def test_sort_sampler_peak_is_the_measured_rate_per_logit() -> None:
    """vllm-accounting.md 1.4 measured the sort-based top-p sampler at 1.16 GiB for 256 x 128256 on H100.

    With the profile batch's forward peak made negligible, the sort path reproduces that figure, and the fused-kernel
    path is the fitted base + rate (0.15 GiB + 14.2 B per logit)."""
    from planner.memory import activation_peak_bytes

    p = params(activation_hidden_factor=0.0)
    small_forward = inputs(max_num_batched_tokens=256, max_num_seqs=256)  # 256 x 3 x 14336 x 2 B = 21 MiB forward
    native = activation_peak_bytes(LLAMA_8B, replace(small_forward, sampler_sort=True), p, last_stage=True)
    assert abs(native / GiB - 1.16) < 0.01
    fused = activation_peak_bytes(LLAMA_8B, small_forward, p, last_stage=True)
    assert abs(fused / GiB - (0.15 + 14.2 * 256 * 128256 / GiB)) < 1e-6
    assert activation_peak_bytes(LLAMA_8B, replace(small_forward, sampler_sort=True), p,
                                 last_stage=False) < 0.03 * GiB  # only the last PP stage samples


def test_expert_parallel_keeps_whole_expert_intermediates() -> None:
    """A fused-MoE cache holds T x top_k rows of the expert intermediate: split over TP without EP, whole with EP.

    Qwen3-30B-A3B-shaped (H=2048, 128 experts top-8, I_moe=768), T=8192, TP=4, bf16, hidden buffers off:
    no EP: 8192 x 3 x (768 x 8 / 4) x 2 B = 72 MiB; EP: 8192 x 3 x 768 x 8 x 2 B = 288 MiB."""
    from planner.memory import activation_peak_bytes
    from planner.models.arch import MoEInfo

    moe = ModelArch(**{**LLAMA_8B.__dict__, "name": "moe", "hidden_size": 2048, "intermediate_size": 6144,
                       "moe": MoEInfo(num_experts=128, experts_per_token=8, moe_intermediate_size=768)})
    p = params(activation_hidden_factor=0.0)
    base = inputs(tp=4, max_num_batched_tokens=8192)
    assert activation_peak_bytes(moe, base, p, last_stage=False) == 8192 * 3 * (768 * 8 // 4) * 2
    assert activation_peak_bytes(moe, replace(base, ep=True), p, last_stage=False) == 8192 * 3 * 768 * 8 * 2
