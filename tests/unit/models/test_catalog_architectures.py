"""Issue 21, "Architectures": the hybrid and MoE families added to the offline catalog parse faithfully.

Per bundled model (planner/models/catalog/sources/architectures.yaml): total and active parameters against the
figure a public source states (within 1%, or within half a unit of the last stated digit when the source rounds
to a whole billion), the attention kind and the per-layer kinds, and what vLLM loads (MTP layers are not part
of the main model: vllm glm4_moe.py skip_spec_layers, nemotron_h.py maps "mtp" to None, minimax_m2.py drops
layers.{62..64}). Then one hybrid's KV/state bytes by hand, the Mamba2 mixer by hand, Kimi-K2 from the
aiconfigurator mirror, and gpt-oss-20b's weights per GPU at TP2 against vLLM's log.

Models load through load_catalog_dir (the directory, not index.json), so these tests do not depend on the
generated index being rebuilt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from planner.kvcache import kv_layout, state_bytes_per_layer
from planner.memory import MemoryInputs, account, rope_cache_bytes
from planner.models.arch import ModelArch, parse_config
from planner.models.params import (
    Mxfp4Storage,
    active_params,
    block_scale_params,
    layer_tensors,
    mtp_params,
    mxfp4_intermediate_per_rank,
    rank_weights,
    total_params,
)
from planner.models.sources import load_catalog_dir
from planner.policy.loader import load_packset

GiB = 2**30
B = 10**9
MIRROR = Path("/work/.mirror/ai-dynamo+aiconfigurator/repo")
MIRROR_CONFIGS = "aic-core/src/aiconfigurator_core/model_configs"


def embeddings(arch: ModelArch) -> int:
    """Input embedding plus lm_head: what 'active parameters' figures that exclude embeddings leave out."""
    return arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)


def close(ours: int, published: float, *, unit: float | None = None) -> bool:
    """Within 1% of the published figure, or, when the source rounds to `unit` (e.g. "10B"), within half a unit."""
    return abs(ours - published) <= max(0.01 * published, (unit or 0) / 2)


# ----------------------------------------------------------------------------- published counts


class Case(NamedTuple):
    model: str
    total: float
    active: float
    active_counts: str  # "all" (embeddings included) | "no_embeddings" (input embedding and lm_head left out)
    citation: str
    unit: float | None = None  # the source rounds to this (None: compare within 1%)


CASES = [
    # "The Nemotron-H family includes models of 8B, 47B, and 56B parameters" (dense: active == total).
    Case("nvidia/Nemotron-H-56B-Base-8K", 56 * B, 56 * B, "all",
         "NVIDIA NeMo Framework user guide 25.07, llms/mamba.html, 'New in Mamba: Nemotron-H Models'", unit=B),
    # NVIDIA-NeMo/Nemotron README model table: "31.6B total / 3.6B active" (public GitHub file ref 60999544624).
    Case("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", 31.6 * B, 3.6 * B, "all",
         "NVIDIA-NeMo/Nemotron README, GitHub file ref 60999544624"),
    # "a compact, fast, and cost-effective MoE model (230 billion total parameters with 10 billion active
    # parameters)": MiniMax-M2 card text, quoted in transformers docs model_doc/minimax_m2.md (file ref 2648239435).
    Case("MiniMaxAI/MiniMax-M2.7", 230 * B, 10 * B, "no_embeddings", "MiniMax-M2 card, GitHub file ref 2648239435",
         unit=B),
    Case("MiniMaxAI/MiniMax-M2.5", 230 * B, 10 * B, "no_embeddings", "MiniMax-M2 card, GitHub file ref 2648239435",
         unit=B),
    # "a total of 456 billion parameters with 45.9 billion parameters activated per token".
    Case("MiniMaxAI/MiniMax-M1-80k", 456 * B, 45.9 * B, "no_embeddings",
         "github:MiniMax-AI/MiniMax-M1@2abb4f45a9df4154b4bde024d51874bd127edcee:README.md"),
    # "GLM-5 scales from 355B parameters (32B active) to 744B parameters (40B active)".
    Case("zai-org/GLM-5", 744 * B, 40 * B, "no_embeddings",
         "github:zai-org/GLM-5@1a977a8a92e810bd78b0c0a98f8623c8a2c02751:README.md", unit=B),
    # "GLM-4.5-Air adopts a more compact design with 106 billion total parameters and 12 billion active parameters".
    Case("zai-org/GLM-4.5-Air", 106 * B, 12 * B, "no_embeddings",
         "github:zai-org/GLM-4.5@08158da0b5cb63e7e9da9529482cc5d30e2a7437:README.md", unit=B),
]


@pytest.mark.parametrize("case", CASES, ids=[c.model for c in CASES])
def test_total_and_active_match_the_published_figures(case: Case) -> None:
    arch = load_catalog_dir(case.model)
    total, active = total_params(arch), active_params(arch)
    if case.active_counts == "no_embeddings":
        active -= embeddings(arch)
    assert close(total, case.total, unit=case.unit), (
        f"{case.model}: total {total:,} vs {case.total:,.0f} ({case.citation})")
    assert close(active, case.active, unit=case.unit), (
        f"{case.model}: active {active:,} vs {case.active:,.0f} ({case.citation})")


def test_nemotron3_nano_active_without_the_input_embedding() -> None:
    """The Nano 3 technical report's 3.2B 'active per forward pass' leaves the input embedding out (a lookup, not
    a matmul) but keeps lm_head: 3.58B - 131,072 x 2,688 = 3.23B (NVIDIA-NeMo/Nemotron, file ref 54843192680)."""
    arch = load_catalog_dir("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")
    assert close(active_params(arch) - arch.vocab_size * arch.hidden_size, 3.2 * B)


def test_catalog_records_name_the_config_architecture() -> None:
    """Every architectures.yaml record points at a bundled directory whose config.json names that architecture."""
    sources = Path(__file__).resolve().parents[3] / "planner/models/catalog/sources/architectures.yaml"
    records = [json.loads(line[2:]) for line in sources.read_text(encoding="utf-8").splitlines()
               if line.startswith("- {")]
    assert {r["id"] for r in records} == {c.model for c in CASES}
    for rec in records:
        arch = load_catalog_dir(rec["id"])
        assert arch.architectures[0] == rec["architecture"], rec["id"]


# ----------------------------------------------------------------------------- layer kinds and attention


def test_nemotron_h_56b_layers_follow_the_hybrid_override_pattern() -> None:
    """118 layers: 54 M (Mamba2), 10 * (attention), 54 - (MLP); each layer holds exactly one block and the
    attention has no rotary embedding (vllm nemotron_h.py: NemotronHAttention builds no get_rope)."""
    arch = load_catalog_dir("nvidia/Nemotron-H-56B-Base-8K")
    pattern = arch.raw["hybrid_override_pattern"]
    assert Counter(pattern) == {"M": 54, "*": 10, "-": 54}
    assert Counter(arch.layer_types) == {"mamba": 54, "full_attention": 10, "mlp": 54}
    assert [k for c, k in zip(pattern, arch.layer_types, strict=True) if c == "*"] == ["full_attention"] * 10
    assert arch.attention_kind == "hybrid" and arch.moe is None and arch.mixer_xor_mlp and not arch.rope
    assert (arch.num_attention_heads, arch.num_kv_heads, arch.head_dim) == (64, 8, 128)
    assert not arch.gated_mlp and arch.norms_per_layer == 1 and arch.intermediate_size == 32768
    s = arch.ssm
    assert s is not None and (s.kind, s.num_heads, s.head_dim, s.n_groups, s.state_size, s.conv_kernel) == (
        "mamba2", 256, 64, 8, 256, 4)
    assert s.intermediate_size == 256 * 64 and s.ssm_state_dtype == "float32"  # NemotronH default (vLLM config.py)
    assert rope_cache_bytes(arch, 2) == 0
    # Before issue 21 this config read as 118 full-attention layers, each with a Mamba-less MLP: ~115B, "full".


def test_nemotron3_nano_moe_layers_are_the_e_layers() -> None:
    arch = load_catalog_dir("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")
    pattern = arch.raw["hybrid_override_pattern"]
    assert Counter(pattern) == {"M": 23, "E": 23, "*": 6}
    moe = arch.moe
    assert moe is not None
    assert moe.moe_layers == tuple(i for i, c in enumerate(pattern) if c == "E")
    assert (moe.num_experts, moe.experts_per_token, moe.moe_intermediate_size) == (128, 6, 1856)
    assert moe.shared_expert_intermediate_size == 3712 and moe.router_bias and not arch.gated_mlp
    assert [i for i, k in enumerate(arch.layer_types) if k == "full_attention"] == [5, 12, 19, 26, 33, 42]
    # an MoE layer holds the experts, router, router bias, shared expert and one norm; an M layer no MLP
    e_layer = layer_tensors(arch, 1)
    assert sum(t.numel for t in e_layer) == (128 * 2 * 1856 * 2688 + 128 * 2688 + 128 + 2 * 3712 * 2688 + 2688)
    assert all(t.group != "experts" for t in layer_tensors(arch, 0))


def test_minimax_m1_lightning_and_softmax_layers() -> None:
    """attn_type_list: 0 = lightning (linear) attention, 1 = softmax attention (vllm minimax_text_01.py)."""
    arch = load_catalog_dir("MiniMaxAI/MiniMax-M1-80k")
    flags = arch.raw["attn_type_list"]
    assert Counter(flags) == {0: 70, 1: 10}
    assert arch.layer_types == tuple("full_attention" if f else "linear_attention" for f in flags)
    assert arch.attention_kind == "hybrid"
    assert arch.ssm is not None and (arch.ssm.kind, arch.ssm.num_heads, arch.ssm.head_dim) == ("lightning", 64, 128)
    assert arch.partial_rotary_factor == 0.5  # rotary_dim 64 of head_dim 128
    assert arch.moe is not None and arch.moe.router_fp32 and len(arch.moe.moe_layers) == 80


def test_minimax_m2_is_full_attention_moe_without_its_mtp_modules() -> None:
    arch = load_catalog_dir("MiniMaxAI/MiniMax-M2.7")
    assert arch.attention_kind == "full" and set(arch.layer_types) == {"full_attention"}
    assert arch.num_layers == 62 and arch.qk_norm and arch.partial_rotary_factor == 0.5
    assert arch.moe is not None and arch.moe.router_bias and arch.moe.router_fp32
    assert arch.quant is not None and arch.quant.block_size == (128, 128)
    assert mtp_params(arch) == 0  # num_mtp_modules: vLLM's main model drops layers 62-64


def test_glm5_mla_dsa_first_three_layers_dense() -> None:
    arch = load_catalog_dir("zai-org/GLM-5")
    assert arch.attention_kind == "mla"
    assert arch.moe is not None and arch.moe.moe_layers[:2] == (3, 4) and len(arch.moe.moe_layers) == 75
    # the DeepSeek Sparse Attention indexer of each layer: wq_b, wk_weights_proj, k_norm (vllm deepseek_v2.py Indexer)
    indexer = 32 * 128 * 2048 + (128 + 32) * 6144 + 2 * 128
    attention = sum(t.numel for t in layer_tensors(arch, 0)) - 3 * 6144 * 12288 - 2 * 6144
    assert attention == (2048 * 6144 + 2048 + 64 * 256 * 2048 + 576 * 6144 + 512 + 64 * (192 + 256) * 512
                         + 6144 * 64 * 256 + indexer)
    assert mtp_params(arch) > 0  # the MTP layer exists in the checkpoint; vLLM loads it only for speculation


def test_glm45_air_attention_and_moe_placement() -> None:
    arch = load_catalog_dir("zai-org/GLM-4.5-Air")
    assert arch.attention_kind == "full" and arch.partial_rotary_factor == 0.5 and not arch.qk_norm
    moe = arch.moe
    assert moe is not None and moe.moe_layers == tuple(range(1, 46))  # first_k_dense_replace 1
    assert moe.shared_expert_intermediate_size == 1408 and moe.router_bias and moe.router_fp32
    # Glm4MoeAttention: q/k/v biases, no o_proj bias
    attention = [t for t in layer_tensors(arch, 0) if t.group in ("attention", "norm")]
    biases = sum(t.numel for t in attention if t.group == "norm") - 2 * 4096  # less the two layer norms
    assert biases == 96 * 128 + 2 * 8 * 128
    # total + the MTP layer = the 110B Hugging Face shows for the checkpoint (MTP layer 46 included)
    assert round((total_params(arch) + mtp_params(arch)) / B) == 110


# ----------------------------------------------------------------------------- Kimi-K2 (MLA, 384 experts)


def test_kimi_k2_counts() -> None:
    """DeepseekV3ForCausalLM, model_type kimi_k2: MLA with 64 heads, 384 experts top-8 + 1 shared, layer 0 dense.

    vLLM builds layer 0 dense (deepseek_v2.py: MoE only for layer_idx >= first_k_dense_replace), so the loaded
    model is 1,026.4B; with the FP8 checkpoint's fp32 block scales that is the safetensors total 1,026,470,731,056
    (model_inspector report, GitHub file ref 62698259723). The tech report's "1.04T total / 32.6B activated"
    matches the activated figure (within 1%); its total is 1.3% above what the checkpoint holds -- the figure
    one gets counting layer 0 as an MoE layer (1,042,970,097,536)."""
    arch = load_catalog_dir("moonshotai/Kimi-K2-Instruct")  # the bundled copy of the mirror's file
    assert arch.model_type == "kimi_k2" and arch.attention_kind == "mla"
    assert (arch.num_attention_heads, arch.moe.num_experts, arch.moe.experts_per_token) == (64, 384, 8)
    assert arch.moe.moe_layers == tuple(range(1, 61))
    total = total_params(arch)
    assert abs(total + block_scale_params(arch) - 1_026_470_731_056) < 1e-6 * total
    assert close(active_params(arch), 32.6 * B)
    assert round(total / 1e12) == 1  # the card's "1T total"


# ----------------------------------------------------------------------------- Mamba2 / KV / state by hand


def test_nemotron_h_mamba2_mixer_by_hand() -> None:
    """One M layer as vLLM's MambaMixer2 holds it (vllm/model_executor/layers/mamba/mamba_mixer2.py): in_proj
    [z, x, B, C, dt] = 2 x 16384 + 2 x 8 x 256 + 256 rows, conv1d over [x, B, C] (kernel 4 + bias),
    A (float32), D, dt_bias per head, the gated RMSNorm over d_inner, out_proj; plus the layer's one RMSNorm."""
    arch = load_catalog_dir("nvidia/Nemotron-H-56B-Base-8K")
    d_inner, conv_dim = 256 * 64, 256 * 64 + 2 * 8 * 256
    mixer = (8192 * (2 * d_inner + 2 * 8 * 256 + 256) + conv_dim * (4 + 1) + 3 * 256 + d_inner + d_inner * 8192)
    assert sum(t.numel for t in layer_tensors(arch, 0)) == mixer + 8192
    mlp_layer = 2 * 8192 * 32768 + 8192  # relu2 up + down, one norm
    attention_layer = 8192 * (64 * 128 + 2 * 8 * 128) + 64 * 128 * 8192 + 8192
    assert total_params(arch) == (54 * (mixer + 8192) + 54 * mlp_layer + 10 * attention_layer
                                  + 2 * 131072 * 8192 + 8192)


def test_nemotron_h_56b_kv_and_state_bytes_by_hand() -> None:
    """TP1, bf16: each attention layer caches 2 x 8 heads x 128 x 2 B = 4,096 B per token; each Mamba layer holds
    a conv state (kernel-1) x (d_inner + 2 x groups x N) in bf16 and an SSM state heads x head_dim x N in float32
    (mamba_utils.py mamba2_state_shape; NemotronH's mamba_ssm_cache_dtype float32). The attention block is raised
    until one page holds that state (16 x cdiv(state, 16 x 4,096) tokens), and the 10 attention + 54 Mamba
    layers form 1 + 6 groups of 10 (kv_cache_utils grouping); '-' layers hold nothing."""
    arch = load_catalog_dir("nvidia/Nemotron-H-56B-Base-8K")
    conv = 3 * (256 * 64 + 2 * 8 * 256) * 2
    ssm = 256 * 64 * 256 * 4
    assert (conv, ssm) == (122_880, 16_777_216)
    assert state_bytes_per_layer(arch, 1, 2) == conv + ssm == 16_900_096
    layout = kv_layout(arch, range(118), tp=1, kv_bytes=2, block_size=16, hybrid_manager=True, state_bytes=2)
    assert layout.block_size == 16 * -(-16_900_096 // (16 * 4096)) == 4128
    assert layout.page_bytes == 4128 * 4096
    assert [(g.kind, g.slots) for g in layout.groups] == [("full_attention", 10)] + [("state", 10)] * 6
    assert layout.kv_bytes_per_token == 10 * 4096 and layout.state_layers == 54
    # TP2: heads, groups and the conv channels split; the float32 SSM state stays float32
    assert state_bytes_per_layer(arch, 2, 2) == conv // 2 + ssm // 2
    # an fp8 KV cache does not shrink the states: vLLM keeps them in the model dtype (mamba_cache_dtype "auto")
    fp8 = kv_layout(arch, range(118), tp=1, kv_bytes=1, block_size=16, hybrid_manager=True, state_bytes=2)
    assert fp8.block_size == 16 * -(-16_900_096 // (16 * 2048))


def test_minimax_m1_lightning_state_by_hand() -> None:
    """A lightning-attention layer keeps (heads/TP, head_dim, head_dim) per request in the model dtype
    (mamba_utils.py linear_attention_state_shape / _dtype): 64 x 128 x 128 x 2 B = 2 MiB at TP1."""
    arch = load_catalog_dir("MiniMaxAI/MiniMax-M1-80k")
    assert state_bytes_per_layer(arch, 1, 2) == 64 * 128 * 128 * 2
    assert state_bytes_per_layer(arch, 8, 2) == 8 * 128 * 128 * 2
    layout = kv_layout(arch, range(80), tp=1, kv_bytes=2, block_size=16, hybrid_manager=True, state_bytes=2)
    assert layout.block_size == 512 and layout.page_bytes == 512 * 8 * 256 * 2
    assert layout.attention_layers == 10 and layout.state_layers == 70


def test_glm5_kv_includes_the_indexer_key_cache() -> None:
    """MLA latent (512 + 64) x 2 B plus the DSA indexer's FP8 key cache, 128 + 128 / 128 x 4 = 132 B, per layer
    and token (vllm deepseek_v2.py Indexer: DeepseekV32IndexerCache)."""
    arch = load_catalog_dir("zai-org/GLM-5")
    layout = kv_layout(arch, range(78), tp=8, kv_bytes=2, block_size=64, hybrid_manager=True, state_bytes=2)
    assert layout.kv_bytes_per_token == 78 * (576 * 2 + 132)


# ----------------------------------------------------------------------------- gpt-oss-20b at TP2


# vLLM 0.19.0, H100 80GB, `vllm serve openai/gpt-oss-20b --tensor-parallel-size 2 --max-model-len 8192`: rank 0
# logs "Peak GPU memory after loading weights: 6.76 GiB" and "Model loading took 7.01 GiB memory" [source:
# llm-d-incubation/llm-d-planner@d3121e059da88662db39a926a3ead964be97359b:accuracy/results/v0.19.0/logs/
# openai-gpt-oss-20b--h100-80gb--tp2pp1dp1--8192.log; the TP1 log of the same PR (13.64 GiB) is the
# shared/calibration row llmd-planner-v0.19.0/openai-gpt-oss-20b--h100-80gb--tp1pp1dp1--8192.FAILED]
GPT_OSS_20B_TP2_LOGGED_GIB = 7.01
GPT_OSS_20B_TP1_LOGGED_GIB = 13.64
GPT_OSS_120B_TP1_LOGGED_GIB = 64.38  # vLLM 0.14.1, H100 (vllm#33155)
VLLM_019 = Mxfp4Storage(value_pad_bytes=64)  # vLLM 0.19-0.20 vendored triton_kernels: HopperMXValueLayout pre-pad
VLLM_014 = Mxfp4Storage()  # 0.14.1: no value pre-pad


def gpt_oss_gib(model: str, tp: int, storage: Mxfp4Storage | None) -> float:
    arch = load_catalog_dir(model)
    wb = float(load_packset(use_env=False).param_values()["wbytes_mxfp4"])
    rw = rank_weights(arch, tp=tp, pp=1, stage=0, act_bytes=2, linear_bytes_per_param=wb,
                      rope_cache_bytes=rope_cache_bytes(arch, 2), mxfp4=storage)
    return rw.total_bytes / GiB


def test_gpt_oss_20b_tp2_mxfp4_shard_is_padded() -> None:
    """The expert intermediate per rank is 2,880 // 2 = 1,440, which vLLM rounds up to 1,472 for the Triton MXFP4
    backend (fused_moe/oracle/mxfp4.py mxfp4_round_up_hidden_size_and_intermediate_size: round_up(I, 64));
    every expert's weights, scales and biases are allocated at 1,472 rows."""
    assert mxfp4_intermediate_per_rank(2880, 2, ep=False, align=64) == 1472
    assert mxfp4_intermediate_per_rank(2880, 1, ep=False, align=64) == 2880
    assert mxfp4_intermediate_per_rank(2880, 4, ep=False, align=64) == 768


def test_gpt_oss_20b_tp2_weights_match_the_vllm_log() -> None:
    """7.01 GiB logged per GPU; the planner said 6.70 (-4.4%) before. With the padded shard, the float32 expert
    biases, the swizzled scale copy and vLLM 0.19's value pre-pad it is within 1%."""
    assert abs(gpt_oss_gib("openai/gpt-oss-20b", 2, None) - GPT_OSS_20B_TP2_LOGGED_GIB) > 0.04 * 7.01  # the old miss
    ours = gpt_oss_gib("openai/gpt-oss-20b", 2, VLLM_019)
    assert abs(ours - GPT_OSS_20B_TP2_LOGGED_GIB) / GPT_OSS_20B_TP2_LOGGED_GIB < 0.01, ours


@pytest.mark.parametrize(("model", "tp", "storage", "logged"), [
    ("openai/gpt-oss-20b", 1, VLLM_019, GPT_OSS_20B_TP1_LOGGED_GIB),
    ("openai/gpt-oss-120b", 1, VLLM_014, GPT_OSS_120B_TP1_LOGGED_GIB),
])
def test_gpt_oss_tp1_does_not_regress(model: str, tp: int, storage: Mxfp4Storage, logged: float) -> None:
    """TP1 holds I = 2,880 (already a multiple of 64): the TP1 rows stay within 1% (they were -1.8% and -0.4%)."""
    ours = gpt_oss_gib(model, tp, storage)
    assert abs(ours - logged) / logged < 0.01, ours


def test_memory_account_uses_the_mxfp4_storage_of_the_rule_pack() -> None:
    """memory.account passes the Hopper MXFP4 layout to rank_weights; a pack that sets mxfp4_value_pad_bytes
    (64 for vLLM 0.19-0.20) gets the pre-padded values."""
    arch = load_catalog_dir("openai/gpt-oss-20b")
    params = load_packset(use_env=False).param_values()
    inp = MemoryInputs(total_bytes=85_017_493_504, tp=2, pp=1, dtype="bfloat16",
                       linear_bytes_per_param=float(params["wbytes_mxfp4"]), kv_cache_dtype="auto",
                       gpu_memory_utilization=0.9, max_model_len=8192, max_num_seqs=1024, max_num_batched_tokens=8192,
                       block_size=16, enforce_eager=False, scales={})
    default = account(arch, inp, params).weights_bytes / GiB
    padded = account(arch, inp, {**params, "mxfp4_value_pad_bytes": 64}).weights_bytes / GiB
    assert default == pytest.approx(gpt_oss_gib("openai/gpt-oss-20b", 2, Mxfp4Storage()), abs=1e-9)
    assert padded == pytest.approx(gpt_oss_gib("openai/gpt-oss-20b", 2, VLLM_019), abs=1e-9)
    assert abs(padded - GPT_OSS_20B_TP2_LOGGED_GIB) / GPT_OSS_20B_TP2_LOGGED_GIB < 0.01


def test_parse_of_a_nemotron_h_config_without_num_hidden_layers() -> None:
    """Nemotron-3 Ultra's config gives only layers_block_type; NemotronHConfig derives num_hidden_layers from it."""
    config = json.loads((Path(__file__).resolve().parents[3] / "planner/models/catalog/nvidia/"
                         "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16/config.json").read_text(encoding="utf-8"))
    blocks = {"M": "mamba", "*": "attention", "E": "moe"}
    config["layers_block_type"] = [blocks[c] for c in config.pop("hybrid_override_pattern")]
    del config["num_hidden_layers"]
    arch = parse_config(config, name="nemotron-blocks")
    nano = load_catalog_dir("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")
    assert arch.num_layers == 52 and arch.layer_types == nano.layer_types
    assert total_params(arch) == total_params(nano) and arch.moe.moe_layers == nano.moe.moe_layers


def test_mirror_copy_is_byte_identical_to_the_bundled_file() -> None:
    """The VERBATIM mirror records: the bundled bytes are the mirror's (where the mirror is available)."""
    if shutil.which("git") is None or not MIRROR.exists():
        pytest.skip("the aiconfigurator mirror is not available here")
    catalog = Path(__file__).resolve().parents[3] / "planner/models/catalog"
    for model in ("nvidia/Nemotron-H-56B-Base-8K", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
                  "MiniMaxAI/MiniMax-M2.7", "MiniMaxAI/MiniMax-M2.5", "zai-org/GLM-5"):
        name = f"{MIRROR_CONFIGS}/{model.replace('/', '--')}_config.json"
        blob = subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:{name}"], capture_output=True, check=True,
                              timeout=60).stdout
        assert (catalog / model / "config.json").read_bytes() == blob, model
