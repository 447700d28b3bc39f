"""CPU weight offload (`--cpu-offload-gb`, issue 19): hand calculations from vLLM's offloader, datasheet link times."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from planner.features.offload import (
    budget_bytes,
    eligible_bytes,
    host_link_key,
    model_runner_v2_ignores_offload,
    offload_problems,
    offload_step_ms,
    offloaded_bytes,
)
from planner.hardware.catalog import load_catalog
from planner.models.arch import ModelArch, MoEInfo, QuantInfo
from planner.models.params import rank_weights

GiB = 2**30
REPO = Path(__file__).resolve().parents[3]

# The pack params this module reads (reported for rules/core/pack.yaml; defaults from measured pinned H2D runs).
PARAMS = {"offload_h2d_efficiency_pcie3": 0.76, "offload_h2d_efficiency_pcie4": 0.785,
          "offload_h2d_efficiency_pcie5": 0.55, "offload_h2d_efficiency_pcie6": 0.55,
          "offload_h2d_efficiency_nvlink_c2c": 0.76}

# Llama-3.1-8B-Instruct geometry, written by hand from its config.json.
LLAMA_8B = ModelArch(
    name="meta-llama/Llama-3.1-8B-Instruct", model_type="llama", architectures=("LlamaForCausalLM",),
    hidden_size=4096, num_layers=32, num_attention_heads=32, num_kv_heads=8, head_dim=128, v_head_dim=128,
    intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, max_position_embeddings=131072,
    config_dtype="bfloat16", layer_types=("full_attention",) * 32,
)

# One Llama-3.1-8B decoder layer at TP1 in bf16, parameter by parameter as LlamaDecoderLayer registers them:
QKV = (4096 + 2 * 8 * 128) * 4096 * 2  # self_attn.qkv_proj.weight  50,331,648
O_PROJ = 4096 * 4096 * 2  # self_attn.o_proj.weight                                 33,554,432
GATE_UP = 2 * 14336 * 4096 * 2  # mlp.gate_up_proj.weight                       234,881,024
DOWN = 4096 * 14336 * 2  # mlp.down_proj.weight                                117,440,512
NORMS = 2 * 4096 * 2  # input_layernorm + post_attention_layernorm              16,384
LAYER = QKV + O_PROJ + GATE_UP + DOWN + NORMS  # 436,224,000


def _offload(gb: float, arch: ModelArch = LLAMA_8B, version: str = "0.33.0", **kw: object) -> int:
    args: dict = {"tp": 1, "pp": 1, "stage": 0, "act_bytes": 2, "linear_bytes_per_param": 2.0}
    args.update(kw)
    return offloaded_bytes(arch, cpu_offload_gb=gb, version=version, **args)


def test_budget_is_gib_per_gpu() -> None:
    # vllm/v1/worker/gpu_model_runner.py: set_cpu_offload_max_bytes(int(cpu_offload_gb * 1024**3))
    assert budget_bytes(4) == 4_294_967_296
    assert budget_bytes(0.5) == 536_870_912


def test_llama8b_4gib_offloads_whole_parameters_and_overshoots() -> None:
    # 9 whole layers = 3,926,016,000 B < 4 GiB. Layer 9: qkv -> 3,976,347,648, o -> 4,009,902,080,
    # gate_up -> 4,244,783,104 (< 4,294,967,296), down -> 4,362,223,616 (>= budget, the check runs before each
    # parameter, so down_proj goes whole); its two norms stay.
    want = 9 * LAYER + QKV + O_PROJ + GATE_UP + DOWN
    assert want == 4_362_223_616
    assert _offload(4) == want
    # Weights left on the GPU: 32 layers + embed_tokens + lm_head (128,256 x 4,096 bf16 each) + final norm.
    total = 32 * LAYER + 2 * 128256 * 4096 * 2 + 4096 * 2
    assert total == 16_060_522_496
    rw = rank_weights(LLAMA_8B, tp=1, pp=1, stage=0, act_bytes=2, linear_bytes_per_param=2.0, rope_cache_bytes=0)
    assert rw.total_bytes == total
    assert total - _offload(4) == 11_698_298_880  # 10.89 GiB left


def test_budget_on_a_parameter_boundary_does_not_overshoot() -> None:
    assert _offload(LAYER / GiB) == LAYER  # after the last norm the total equals the budget: stop
    assert _offload(1 / GiB) == QKV  # one byte of budget still moves the first (fused qkv) parameter whole


def test_only_decoder_layers_are_eligible() -> None:
    # make_layers hands only the decoder layers to the offloader: embeddings, lm_head and the final norm stay.
    assert eligible_bytes(LLAMA_8B, tp=1, pp=1, stage=0, act_bytes=2, linear_bytes_per_param=2.0,
                          version="0.33.0") == 32 * LAYER
    assert _offload(100) == 32 * LAYER


def test_tensor_parallel_offloads_shards() -> None:
    # TP2: qkv (4096 + 2048) x 4096 / 2, o, gate_up, down halved; norms replicated.
    qkv, o, gu, down = QKV // 2, O_PROJ // 2, GATE_UP // 2, DOWN // 2
    layer = qkv + o + gu + down + NORMS  # 218,120,192
    # 19 layers = 4,144,283,648; + qkv, o = 4,186,226,688; + gate_up = 4,303,667,200 >= 4 GiB
    assert _offload(4, tp=2) == 19 * layer + qkv + o + gu == 4_303_667_200


def test_each_pipeline_stage_has_its_own_budget() -> None:
    # Each PP rank is its own process with its own counter, over its own 16 layers.
    assert _offload(4, pp=2, stage=0) == _offload(4, pp=2, stage=1) == 9 * LAYER + QKV + O_PROJ + GATE_UP + DOWN
    assert _offload(100, pp=2, stage=1) == 16 * LAYER


def test_qwq_32b_awq_matches_the_offloader_log() -> None:
    # vllm#56319 (0.29.0): Qwen/QwQ-32B-AWQ with --cpu-offload-gb 8 logs "Total CPU offloaded parameters: 8.02"
    # (UVAOffloader.wrap_modules, format_gib: two decimals). AWQ int4, group 128: 0.5 + 2/128 + 0.5/128 B/param.
    qwq = ModelArch(
        name="Qwen/QwQ-32B-AWQ", model_type="qwen2", architectures=("Qwen2ForCausalLM",), hidden_size=5120,
        num_layers=64, num_attention_heads=40, num_kv_heads=8, head_dim=128, v_head_dim=128,
        intermediate_size=27648, vocab_size=152064, tie_word_embeddings=False, max_position_embeddings=40960,
        config_dtype="bfloat16", layer_types=("full_attention",) * 64, attention_bias=True,
        quant=QuantInfo(method="awq", weight_bits=4, group_size=128))
    got = _offload(8, qwq, "0.29.0", linear_bytes_per_param=0.5 + 2 / 128 + 0.5 / 128)
    assert round(got / GiB, 2) == 8.02


def test_model_runner_v2_ignores_the_flag_in_0_25() -> None:
    # 0.25: a dense, non-hybrid generative model runs on Model Runner V2, whose runner has no set_offloader call.
    assert model_runner_v2_ignores_offload(LLAMA_8B, "0.25.0")
    assert _offload(4, version="0.25.0") == 0
    assert not model_runner_v2_ignores_offload(LLAMA_8B, "0.20.0")  # V2 opt-in only
    assert not model_runner_v2_ignores_offload(LLAMA_8B, "0.29.0")  # set_offloader added in 0.28
    # A MoE model not on the default-V2 list stays on the V1 runner, which offloads.
    moe = replace(LLAMA_8B, name="mixtral-like", architectures=("MixtralForCausalLM",),
                  moe=MoEInfo(num_experts=8, experts_per_token=2, moe_intermediate_size=14336))
    assert not model_runner_v2_ignores_offload(moe, "0.25.0")
    assert _offload(4, moe, "0.25.0") > 0
    problems = offload_problems(LLAMA_8B, cpu_offload_gb=4, version="0.25.0", offloaded=0, eligible=0)
    assert any("Model Runner V2" in p and "56283" in p for p in problems)


def test_moe_experts_move_as_fused_w13_then_w2() -> None:
    # Mixtral-shaped layer (MixtralDecoderLayer: self_attn, then MixtralMoE: gate before FusedMoE): qkv, o,
    # gate (8 x 4096 bf16 = 65,536 B), w13_weight (8 x 2 x 14336 x 4096 x 2 = 1,879,048,192 B, one parameter),
    # w2_weight (939,524,096 B). 2 GiB: qkv + o + gate + w13 = 1,962,999,808 < 2,147,483,648, so w2 goes too.
    moe = replace(LLAMA_8B, name="mixtral-like", architectures=("MixtralForCausalLM",),
                  moe=MoEInfo(num_experts=8, experts_per_token=2, moe_intermediate_size=14336))
    gate = 8 * 4096 * 2
    w13, w2 = 8 * 2 * 14336 * 4096 * 2, 8 * 14336 * 4096 * 2
    assert _offload(2, moe) == QKV + O_PROJ + gate + w13 + w2 == 2_902_523_904
    # 1.8 GiB (1,932,735,283 B): qkv + o + gate = 83,951,616; w13 crosses -> stop before w2
    assert _offload(1.8, moe) == QKV + O_PROJ + gate + w13


def test_transfer_time_from_the_datasheet_link() -> None:
    catalog = load_catalog(REPO / "gpu_catalog")
    link = catalog["h100-sxm-80gb"].host_link
    # H100 datasheet: PCIe Gen5 128 GB/s both ways -> 64e9 B/s host to device; x 0.55 measured (35.2 GB/s).
    assert link.bandwidth_bytes_per_s == 64e9
    key = host_link_key(link.type, link.pcie_gen)
    assert key == "pcie5"
    ms = offload_step_ms(4_362_223_616, link.bandwidth_bytes_per_s, PARAMS, link=key)
    assert ms == pytest.approx(4_362_223_616 / 35.2e9 * 1000)  # 123.9 ms per forward
    assert ms == pytest.approx(123.93, abs=0.01)
    # GH200: NVLink-C2C 450 GB/s per direction x 0.76 (342 GB/s measured)
    gh = catalog["gh200-96gb"].host_link
    assert offload_step_ms(342_000_000_000, gh.bandwidth_bytes_per_s, PARAMS,
                           link=host_link_key(gh.type, gh.pcie_gen)) == pytest.approx(1000.0)
    assert offload_step_ms(0, 64e9, PARAMS, link="pcie5") == 0.0


def test_more_offload_is_never_faster_and_never_holds_more_on_the_gpu() -> None:
    last_bytes, last_ms = -1, -1.0
    for gb in (0, 0.01, 0.5, 1, 2, 3.99, 4, 4.5, 8, 13, 16, 64):
        b = _offload(gb)
        ms = offload_step_ms(b, 32e9, PARAMS, link="pcie4")
        assert b >= last_bytes and ms >= last_ms, gb
        assert b >= budget_bytes(gb) or b == 32 * LAYER  # whole parameters: at least the budget, or all there is
        last_bytes, last_ms = b, ms


def test_host_link_keys() -> None:
    assert host_link_key("pcie", 3) == "pcie3"
    assert host_link_key("pcie", 6) == "pcie6"
    assert host_link_key("nvlink-c2c", None) == "nvlink_c2c"
    with pytest.raises(ValueError):
        host_link_key("pcie", None)
    with pytest.raises(ValueError):
        offload_step_ms(1, 64e9, PARAMS, link="pcie7")


def test_problems() -> None:
    def probs(version: str, **kw: object) -> list[str]:
        base: dict = {"cpu_offload_gb": 4, "offloaded": _offload(4), "eligible": 32 * LAYER}
        base.update(kw)
        return offload_problems(LLAMA_8B, version=version, **base)

    assert probs("0.33.0") == []
    assert probs("0.33.0", cpu_offload_gb=0) == []
    assert probs("0.33.0", cpu_offload_gb=-1)[0].startswith("error: --cpu-offload-gb must be non-negative")
    # 0.9.1-0.19: may_reinitialize_input_batch asserts cpu_offload_gb == 0 when the KV cache has several groups
    assert probs("0.11.0", kv_cache_groups=2)[0].startswith("error:")
    assert probs("0.19.0", block_size_changed=True)[0].startswith("error:")
    assert probs("0.20.0", kv_cache_groups=2) == []
    assert probs("0.8.5", kv_cache_groups=2) == []
    # asking for more than the decoder layers hold
    assert any("can be offloaded" in p for p in probs("0.33.0", cpu_offload_gb=20, offloaded=32 * LAYER))
    # Marlin-repacked formats before 0.17 (device_loading_context re-offloads replaced parameters from 0.17)
    assert any("repacked" in p for p in probs("0.15.0", quantization="gptq_marlin"))
    assert not any("repacked" in p for p in probs("0.19.0", quantization="gptq_marlin"))
    assert any("same physical memory" in p for p in probs("0.33.0", unified_memory=True))
