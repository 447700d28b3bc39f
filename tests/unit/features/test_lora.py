"""LoRA slot memory, step cost and refusals, against hand calculations from vLLM's create_lora_weights code."""

from __future__ import annotations

import pytest

from planner.features import LoraSpec
from planner.features.lora import (
    allowed_ranks,
    lora_activation_bytes,
    lora_cudagraph_cases,
    lora_problems,
    lora_step_cost,
    lora_weights_bytes,
)
from planner.models.sources import load_catalog_dir
from planner.units import GiB


@pytest.fixture(scope="module")
def llama8b():
    return load_catalog_dir("meta-llama/Llama-3.1-8B-Instruct")


@pytest.fixture(scope="module")
def mixtral():
    return load_catalog_dir("mistralai/Mixtral-8x7B-v0.1")


SLOTS4_R64 = LoraSpec(max_loras=4, max_lora_rank=64)
R, SLOTS, B = 64, 4, 2  # rank, max_loras, bf16 bytes


def test_llama_8b_four_rank64_slots_tp1_v033(llama8b) -> None:
    # Llama-3.1-8B: H=4096, 32 q heads, 8 kv heads, head 128, I=14336, V=128256, untied, 32 layers.
    # vLLM 0.33 column_parallel_linear.py MergedQKVParallelLinearWithLoRA.create_lora_weights: one lora_a PER SLICE
    #   3 x (slots, 1, r, 4096) and lora_b (slots, 1, 4096|1024|1024, r)      -> r x (3*4096 + 6144) = 18432 r
    # row_parallel_linear.py o_proj: lora_a (slots, 1, r, 4096), lora_b (slots, 1, 4096, r)   -> 8192 r
    # MergedColumnParallelLinearWithLoRA gate_up: 2 x (r, 4096) + (14336 + 14336, r)        -> 36864 r
    # down_proj (row): lora_a (r, 14336), lora_b (4096, r)                                    -> 18432 r
    per_layer = 18432 + 8192 + 36864 + 18432
    assert per_layer == 81920
    layers = 32 * per_layer * R * SLOTS * B  # 1,342,177,280 B = 1.25 GiB
    # embed_tokens (LlamaForCausalLM.embedding_modules): VocabParallelEmbeddingWithLoRA lora_a (slots, 128256, r),
    # lora_b (slots, 1, 4096, r); lm_head: LogitsProcessorWithLoRA lora_a (slots, 1, r, 4096), lora_b (slots, 1,
    # 128256, r). Both over the whole vocabulary.
    embed = (128256 + 4096) * R * SLOTS * B
    head = (4096 + 128256) * R * SLOTS * B
    expected = layers + embed + head
    assert expected == 1_477_705_728  # 1.376 GiB
    assert lora_weights_bytes(llama8b, SLOTS4_R64, tp=1, pp=1, stage=0, act_bytes=2, version="0.33.0") == expected
    # The issue's figure, 32 x 69,632 x 64 x 4 x 2 B = 1.06 GiB, counts ONE lora_a per merged module
    # (qkv 4096+6144, gate_up 4096+28672) and no embed_tokens / lm_head tensors: vLLM allocates 2 more lora_a for
    # qkv and 1 more for gate_up (81,920 per rank per layer: 1.25 GiB) plus 0.126 GiB for embed_tokens and lm_head.
    issue = 32 * 69_632 * 64 * 4 * 2
    assert round(issue / GiB, 2) == 1.06
    assert expected - issue == 32 * (81_920 - 69_632) * R * SLOTS * B + embed + head


def test_llama_8b_tp2_shards_like_vllm(llama8b) -> None:
    # TP=2: column slices hold out/2 rows of lora_b (q 2048, k 512, v 512; gate/up 7168 each) with the full lora_a;
    # row-parallel lora_a covers in/2 (o 2048, down 7168) with the full lora_b. embed/lm_head tensors unsharded.
    qkv = 3 * 4096 + (2048 + 512 + 512)
    o = 2048 + 4096
    gate_up = 2 * 4096 + 2 * 7168
    down = 7168 + 4096
    per_layer = qkv + o + gate_up + down
    assert per_layer == 55296
    embed_head = 2 * (128256 + 4096)
    expected = (32 * per_layer + embed_head) * R * SLOTS * B
    assert lora_weights_bytes(llama8b, SLOTS4_R64, tp=2, pp=1, stage=0, act_bytes=2, version="0.33.0") == expected


def test_llama_8b_fully_sharded_tp2(llama8b) -> None:
    # --fully-sharded-loras (S-LoRA): column lora_a rank r/2 = 32; row lora_b out/2 (o, down: 2048 rows).
    spec = LoraSpec(max_loras=4, max_lora_rank=64, fully_sharded=True)
    qkv = 3 * 32 * 4096 + (2048 + 512 + 512) * 64
    o = 64 * 2048 + 2048 * 64
    gate_up = 2 * 32 * 4096 + 2 * 7168 * 64
    down = 64 * 7168 + 2048 * 64
    embed_head = 2 * (128256 + 4096) * 64
    expected = (32 * (qkv + o + gate_up + down) + embed_head) * SLOTS * B
    assert lora_weights_bytes(llama8b, spec, tp=2, pp=1, stage=0, act_bytes=2, version="0.33.0") == expected


def test_llama_8b_pp2_stages(llama8b) -> None:
    # PP=2: 16 layers a stage; embed_tokens only on stage 0, lm_head only on the last (PPMissingLayer skipped).
    per_layer = 81920 * R * SLOTS * B
    embed = (128256 + 4096) * R * SLOTS * B
    head = (4096 + 128256) * R * SLOTS * B
    assert lora_weights_bytes(llama8b, SLOTS4_R64, tp=1, pp=2, stage=0, act_bytes=2,
                              version="0.33.0") == 16 * per_layer + embed
    assert lora_weights_bytes(llama8b, SLOTS4_R64, tp=1, pp=2, stage=1, act_bytes=2,
                              version="0.33.0") == 16 * per_layer + head


def test_llama_8b_v011_extra_vocab(llama8b) -> None:
    # vLLM 0.11 (lora_extra_vocab_size 256, lora_vocab_padding_size 256):
    # embed lora_a (slots, 128256 + 256, r) + lora_b (H, r); embeddings_tensors (slots, 256, 4096) in the model dtype
    # lm_head lora_b rows = ceil((128256 + 256) / 256) * 256 = 128512; embeddings_tensors (slots, 256, 4096)
    # llama.py: base embedding + 256 x 4 rows, lm_head 128256 padded to 256 (=128256) + 256 rows vs 128256 at 64
    layers = 32 * 81920 * R * SLOTS * B
    embed = (128256 + 256 + 4096) * R * SLOTS * B + SLOTS * 256 * 4096 * B
    head = (4096 + 128512) * R * SLOTS * B + SLOTS * 256 * 4096 * B
    base_rows = (256 * 4 + 256) * 4096 * B
    expected = layers + embed + head + base_rows
    assert lora_weights_bytes(llama8b, SLOTS4_R64, tp=1, pp=1, stage=0, act_bytes=2, version="0.11.0") == expected


def test_lora_dtype_overrides_model_dtype(llama8b) -> None:
    # --lora-dtype float16 on a bf16 model: same 2 bytes; 0.6.4's float32 doubles the stacked tensors.
    fp32 = LoraSpec(max_loras=1, max_lora_rank=8, lora_dtype="float32")
    bf16 = LoraSpec(max_loras=1, max_lora_rank=8)
    args = dict(tp=1, pp=1, stage=0, act_bytes=2, version="0.15.0")
    assert lora_weights_bytes(llama8b, fp32, **args) == 2 * lora_weights_bytes(llama8b, bf16, **args)


def test_mixtral_experts_wrapped_from_015(mixtral) -> None:
    # Mixtral-8x7B: H=4096, 8 experts, I=14336, top-2, 32 layers, V=32000; TP=2 (experts at I/2 = 7168 each).
    # qkv: 3 x 4096 + (2048 + 512 + 512); o: 2048 + 4096; router gate (ReplicatedLinearWithLoRA): 4096 + 8.
    qkv = 3 * 4096 + 3072
    o = 2048 + 4096
    gate = 4096 + 8
    # fused_moe.py FusedMoEWithLoRA, per local expert: w13 lora_a 2 x (r, 4096); w2 lora_a (r, 7168);
    # w13 lora_b 2 x (7168, r); w2 lora_b (4096, r)
    experts = 8 * (2 * 4096 + 7168 + 2 * 7168 + 4096)
    embed_head = 2 * (32000 + 4096)
    expected = (32 * (qkv + o + gate + experts) + embed_head) * R * SLOTS * B
    assert lora_weights_bytes(mixtral, SLOTS4_R64, tp=2, pp=1, stage=0, act_bytes=2, version="0.33.0") == expected
    # 0.11 wraps no FusedMoE: only attention and the router, plus the extra-vocabulary tensors
    embed = (32000 + 256 + 4096) * R
    head = 4096 * R + 32256 * R  # ceil((32000 + 256) / 256) * 256 = 32256
    extra = 2 * SLOTS * 256 * 4096 * B  # two embeddings_tensors
    base_rows = (1024 + 256) // 2 * 4096 * B  # (256 x 4 + 256) rows over TP 2
    expected_011 = (32 * (qkv + o + gate) * R + embed + head) * SLOTS * B + extra + base_rows
    assert lora_weights_bytes(mixtral, SLOTS4_R64, tp=2, pp=1, stage=0, act_bytes=2,
                              version="0.11.0") == expected_011


def test_target_modules_restrict(llama8b) -> None:
    # --lora-target-modules o_proj: only 32 x (4096 + 4096) x r per slot
    got = lora_weights_bytes(llama8b, SLOTS4_R64, tp=1, pp=1, stage=0, act_bytes=2, version="0.33.0",
                             target_modules=("o_proj",))
    assert got == 32 * 8192 * R * SLOTS * B


def test_step_cost_reads_active_slots(llama8b) -> None:
    spec = LoraSpec(max_loras=4, max_lora_rank=16)
    cost = lora_step_cost(llama8b, spec, active=2, tp=1, pp=1, stage=0, act_bytes=2, version="0.33.0",
                          params={"lora_kernel_overhead_us": 10.0})
    # per slot: layers 32 x 81920 x 16, lm_head (4096 + 128256) x 16, embed lora_b 4096 x 16
    slot = (32 * 81920 + 4096 + 128256 + 4096) * 16
    assert cost.bytes_read == 2 * slot * 2
    # FLOPs per token: 2 x (layers + lm_head) elements at rank 16
    assert cost.flops_per_token == 2 * (32 * 81920 + 4096 + 128256) * 16
    # 4 modules a layer + lm_head + embed_tokens
    assert cost.wrapped_modules == 32 * 4 + 2
    assert cost.overhead_s == pytest.approx(130 * 10e-6)
    capped = lora_step_cost(llama8b, spec, active=9, tp=1, pp=1, stage=0, act_bytes=2, version="0.33.0",
                            params={"lora_kernel_overhead_us": 10.0})
    assert capped.bytes_read == 4 * slot * 2  # never more than max_loras slots


def test_activation_and_graphs(llama8b) -> None:
    # gate_up shrink buffer: (2 slices, 8192 tokens, r 64) float32
    assert lora_activation_bytes(llama8b, SLOTS4_R64, tokens=8192, version="0.33.0") == 2 * 8192 * 64 * 4
    assert lora_cudagraph_cases(SLOTS4_R64, "0.11.0") == 1
    assert lora_cudagraph_cases(SLOTS4_R64, "0.33.0") == 2
    # --specialize-active-lora, max_loras 4: counts 1, 2, 4, 5 plus the no-LoRA graph
    assert lora_cudagraph_cases(SLOTS4_R64, "0.33.0", specialize_active_lora=True) == 5


def test_refusals(llama8b) -> None:
    assert allowed_ranks("0.6.4") == (8, 16, 32, 64, 128, 256)
    bad = LoraSpec(max_loras=4, max_lora_rank=320, max_cpu_loras=2)
    problems = lora_problems(llama8b, bad, "0.6.4")
    assert any("--max-lora-rank 320" in p for p in problems)
    assert any("--max-cpu-loras 2" in p for p in problems)
    assert lora_problems(llama8b, bad, "0.33.0") == [p for p in problems if "max-cpu-loras" in p]
    assert any("--lora-dtype float32" in p for p in lora_problems(llama8b, LoraSpec(lora_dtype="float32"), "0.33.0"))
    assert lora_problems(llama8b, LoraSpec(lora_dtype="float32"), "0.6.4") == []
    assert any("rank must divide" in p for p in lora_problems(
        llama8b, LoraSpec(max_lora_rank=8, fully_sharded=True), "0.33.0", tp=16))
    assert lora_problems(llama8b, SLOTS4_R64, "0.33.0") == []


def test_refuses_model_without_lora(mixtral) -> None:
    mamba = load_catalog_dir("mistralai/Mamba-Codestral-7B-v0.1")
    assert any("Mamba2ForCausalLM" in p for p in lora_problems(mamba, LoraSpec(), "0.33.0"))
    assert lora_problems(mixtral, LoraSpec(), "0.33.0") == []
