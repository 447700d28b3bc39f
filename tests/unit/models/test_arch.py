"""parse_config and derived_max_model_len on the bundled configs and on hand-made bad inputs.

Expected values are read off the config files by hand (see the comment on each case).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from planner.errors import ModelConfigError
from planner.models.arch import ModelArch, default_max_model_len, derived_max_model_len, parse_config
from planner.models.sources import CATALOG_DIR


def _config(model_id: str, filename: str = "config.json") -> dict[str, Any]:
    return json.loads((CATALOG_DIR / model_id / filename).read_text(encoding="utf-8"))


def _parse(model_id: str, **overrides: Any) -> ModelArch:
    config = _config(model_id)
    config.update(overrides)
    quant = CATALOG_DIR / model_id / "hf_quant_config.json"
    hf_quant = json.loads(quant.read_text()) if quant.is_file() else None
    return parse_config(config, name=model_id, source=f"catalog:{model_id}", hf_quant_config=hf_quant)


TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 100,
    "intermediate_size": 128,
    "torch_dtype": "bfloat16",
}


class TestDenseGeometry:
    def test_llama_3_1_8b(self) -> None:
        """Llama-3.1-8B: 4096 hidden, 32 layers, 32/8 heads, head_dim 4096/32, untied, llama3 rope."""
        arch = _parse("meta-llama/Llama-3.1-8B-Instruct")

        assert (arch.hidden_size, arch.num_layers, arch.num_attention_heads, arch.num_kv_heads) == (
            4096,
            32,
            32,
            8,
        )
        assert (arch.head_dim, arch.v_head_dim) == (128, 128)
        assert arch.vocab_size == 128256
        assert arch.intermediate_size == 14336
        assert arch.tie_word_embeddings is False
        assert arch.config_dtype == "bfloat16"
        assert arch.rope_scaling["rope_type"] == "llama3"
        assert arch.rope_theta == 500000.0
        assert arch.max_length_keys == {"max_position_embeddings": 131072}
        assert arch.layer_types == ("full_attention",) * 32
        assert arch.gated_mlp and not arch.attention_bias and not arch.norm_has_bias and not arch.qk_norm
        assert arch.moe is None and arch.mla is None and arch.ssm is None and arch.quant is None

    def test_llama_3_2_1b_tied_with_explicit_head_dim(self) -> None:
        """Llama-3.2-1B: tie_word_embeddings true; head_dim 64 (= 2048/32, written explicitly)."""
        arch = _parse("meta-llama/Llama-3.2-1B-Instruct")

        assert arch.tie_word_embeddings is True
        assert arch.head_dim == 64

    @pytest.mark.parametrize(
        ("model_id", "head_dim", "ratio"),
        [
            pytest.param("Qwen/Qwen3-32B", 128, 5120 // 64, id="qwen3-32b"),
            pytest.param("mistralai/Mistral-Nemo-Base-2407", 128, 5120 // 32, id="mistral-nemo"),
            pytest.param("google/gemma-2-9b", 256, 3584 // 16, id="gemma-2-9b"),
            pytest.param("openai/gpt-oss-20b", 64, 2880 // 64, id="gpt-oss"),
        ],
    )
    def test_explicit_head_dim_beats_the_ratio(self, model_id: str, head_dim: int, ratio: int) -> None:
        """An explicit head_dim wins over hidden_size / num_attention_heads (vLLM get_head_size)."""
        arch = _parse(model_id)

        assert head_dim == arch.head_dim
        assert ratio != arch.head_dim

    def test_qwen2_5_has_qkv_bias_and_no_window(self) -> None:
        """Qwen2.5-7B: sliding_window 131072 but use_sliding_window false -> all full; qkv bias."""
        arch = _parse("Qwen/Qwen2.5-7B-Instruct")

        assert arch.layer_types == ("full_attention",) * 28
        assert arch.sliding_window is None
        assert arch.attention_bias is True
        assert (arch.num_attention_heads, arch.num_kv_heads) == (28, 4)

    def test_qwen3_qk_norm(self) -> None:
        """Qwen3-8B carries per-head q/k RMSNorm."""
        assert _parse("Qwen/Qwen3-8B").qk_norm is True

    def test_mistral_null_window_is_full(self) -> None:
        """Mistral-7B-v0.3: sliding_window null -> every layer full attention."""
        arch = _parse("mistralai/Mistral-7B-Instruct-v0.3")

        assert {"full_attention"} == set(arch.layer_types)
        assert arch.sliding_window is None

    def test_phi3_model_level_window(self) -> None:
        """Phi-3-mini-4k: sliding_window 2047 applies to every layer (vLLM's model-level window)."""
        arch = _parse("microsoft/Phi-3-mini-4k-instruct")

        assert arch.sliding_window == 2047
        assert arch.layer_types == ("sliding_attention",) * 32


class TestLegacyFalcon:
    def test_falcon_7b_refinedweb_keys(self) -> None:
        """falcon-7b (RefinedWeb): n_head 71, n_layer 32, multi_query -> 1 KV head, 4h MLP, LayerNorm."""
        arch = _parse("tiiuae/falcon-7b")

        assert arch.model_type == "falcon"
        assert (arch.hidden_size, arch.num_layers, arch.num_attention_heads, arch.num_kv_heads) == (
            4544,
            32,
            71,
            1,
        )
        assert arch.head_dim == 64  # 4544 / 71
        assert arch.intermediate_size == 4 * 4544
        assert arch.gated_mlp is False
        assert arch.norm_has_bias is True
        assert arch.norms_per_layer == 1  # parallel attention shares one input LayerNorm
        assert arch.tie_word_embeddings is True
        assert arch.max_position_embeddings is None
        assert arch.max_length_keys == {}
        assert derived_max_model_len(arch) == 2048

    def test_new_decoder_architecture_ignores_multi_query(self) -> None:
        """Falcon-40B style: new_decoder_architecture uses num_kv_heads, not multi_query."""
        cfg = {
            **TINY,
            "model_type": "falcon",
            "new_decoder_architecture": True,
            "multi_query": True,
            "num_kv_heads": 2,
        }

        assert parse_config(cfg, name="f40").num_kv_heads == 2


class TestNested:
    def test_gemma3_4b_sparse_text_config_defaults(self) -> None:
        """gemma-3-4b-it: text_config omits heads/vocab/max_pos, so Gemma3TextConfig defaults apply."""
        arch = _parse("google/gemma-3-4b-it")

        assert arch.model_type == "gemma3_text"
        assert arch.is_multimodal is True
        assert (
            arch.hidden_size,
            arch.num_layers,
            arch.num_attention_heads,
            arch.num_kv_heads,
            arch.head_dim,
        ) == (2560, 34, 8, 4, 256)
        assert arch.vocab_size == 262208
        assert arch.max_position_embeddings == 131072
        assert arch.rope_theta == 1_000_000.0
        assert arch.tie_word_embeddings is True
        assert arch.qk_norm is True
        assert arch.norms_per_layer == 4
        assert arch.sliding_window == 1024
        full = tuple(i for i, k in enumerate(arch.layer_types) if k == "full_attention")
        assert full == (5, 11, 17, 23, 29)  # every 6th layer
        assert arch.rope_scaling["rope_type"] == "linear"

    def test_gemma3_window_default_when_absent(self) -> None:
        """A gemma3 text_config without sliding_window gets Gemma3TextConfig's 4096."""
        cfg = _config("google/gemma-3-4b-it")
        del cfg["text_config"]["sliding_window"]

        assert parse_config(cfg, name="g").sliding_window == 4096

    def test_gemma3_27b_explicit_heads(self) -> None:
        """gemma-3-27b-it: heads 32/16 and head_dim 128 are written out."""
        arch = _parse("google/gemma-3-27b-it")

        assert (arch.num_attention_heads, arch.num_kv_heads, arch.head_dim) == (32, 16, 128)

    def test_llama4_chunked_and_moe(self) -> None:
        """Llama-4-Scout: chunked 8192 on rope layers, full on every 4th (NoPE); 16 experts top-1."""
        arch = _parse("meta-llama/Llama-4-Scout-17B-16E-Instruct")

        assert arch.is_multimodal is True
        assert arch.attention_chunk_size == 8192
        assert arch.layer_types[:4] == ("chunked_attention",) * 3 + ("full_attention",)
        assert arch.layer_types.count("full_attention") == 12
        assert (arch.moe.num_experts, arch.moe.experts_per_token, arch.moe.moe_intermediate_size) == (
            16,
            1,
            8192,
        )
        assert (arch.moe.num_shared_experts, arch.moe.shared_expert_intermediate_size) == (1, 8192)
        assert tuple(range(48)) == arch.moe.moe_layers
        assert arch.intermediate_size == 16384  # intermediate_size_mlp: the dense MLP

    def test_llm_config_nesting(self) -> None:
        """`llm_config` nests the language model like `text_config` does."""
        arch = parse_config({"architectures": ["X"], "llm_config": TINY, "vision_config": {}}, name="x")

        assert (arch.hidden_size, arch.is_multimodal) == (64, True)


class TestLayerPatterns:
    def test_gpt_oss_explicit_alternation(self) -> None:
        """gpt-oss-20b: explicit layer_types, sliding(128)/full alternating, 12 of each."""
        arch = _parse("openai/gpt-oss-20b")

        assert arch.layer_types == ("sliding_attention", "full_attention") * 12
        assert arch.sliding_window == 128
        assert (arch.moe.num_experts, arch.moe.experts_per_token) == (32, 4)
        assert arch.quant.method == "mxfp4"
        assert arch.config_dtype == "float32"  # no torch_dtype key: vLLM's float32 rule

    def test_gemma2_even_layers_slide(self) -> None:
        """Gemma2Config: layer i slides when (i + 1) % 2 != 0, i.e. even layers."""
        arch = _parse("google/gemma-2-9b")

        assert arch.layer_types == ("sliding_attention", "full_attention") * 21
        assert arch.sliding_window == 4096
        assert arch.config_dtype == "float32"

    def test_qwen3_next_hybrid(self) -> None:
        """Qwen3-Next: full attention every 4th layer, Gated DeltaNet elsewhere; 512 experts top-10."""
        arch = _parse("Qwen/Qwen3-Next-80B-A3B-Instruct")

        assert arch.layer_types[:4] == ("linear_attention",) * 3 + ("full_attention",)
        assert arch.layer_types.count("full_attention") == 12
        assert (
            arch.ssm.kind,
            arch.ssm.num_k_heads,
            arch.ssm.k_head_dim,
            arch.ssm.num_v_heads,
            arch.ssm.v_head_dim,
        ) == ("gdn", 16, 128, 32, 128)
        assert (
            arch.moe.num_experts,
            arch.moe.experts_per_token,
            arch.moe.moe_intermediate_size,
            arch.moe.shared_expert_intermediate_size,
        ) == (512, 10, 512, 512)
        assert arch.partial_rotary_factor == 0.25
        assert arch.attention_kind == "hybrid"

    def test_jamba_periods(self) -> None:
        """Jamba: attention at i % 8 == 4, MoE at i % 2 == 1, Mamba elsewhere."""
        arch = _parse("ai21labs/AI21-Jamba-1.5-Mini")

        assert tuple(i for i, k in enumerate(arch.layer_types) if k == "full_attention") == (4, 12, 20, 28)
        assert tuple(range(1, 32, 2)) == arch.moe.moe_layers
        assert (arch.ssm.kind, arch.ssm.state_size, arch.ssm.intermediate_size) == ("mamba1", 16, 8192)

    @pytest.mark.parametrize(
        ("model_id", "kind", "state"),
        [
            pytest.param("mistralai/Mamba-Codestral-7B-v0.1", "mamba2", 128, id="mamba2"),
            pytest.param("tiiuae/falcon-mamba-7b", "mamba1", 16, id="falcon-mamba"),
        ],
    )
    def test_pure_ssm(self, model_id: str, kind: str, state: int) -> None:
        """Pure Mamba configs: every layer "mamba", no attention heads, no MLP."""
        arch = _parse(model_id)

        assert {"mamba"} == set(arch.layer_types)
        assert (arch.num_attention_heads, arch.num_kv_heads, arch.intermediate_size) == (0, 0, 0)
        assert (kind, state) == (arch.ssm.kind, arch.ssm.state_size)
        assert arch.attention_kind == "ssm"

    def test_codestral_infinity_is_harmless(self) -> None:
        """Mamba-Codestral's time_step_limit [0.0, Infinity] parses (it is not a size field)."""
        arch = _parse("mistralai/Mamba-Codestral-7B-v0.1")

        assert math.isinf(arch.raw["time_step_limit"][1])
        assert (arch.ssm.num_heads, arch.ssm.head_dim, arch.ssm.n_groups) == (128, 64, 8)

    def test_qwen2_use_sliding_window_true(self) -> None:
        """Qwen2Config: with use_sliding_window, layers from max_window_layers on slide."""
        cfg = {
            **TINY,
            "model_type": "qwen2",
            "num_hidden_layers": 4,
            "use_sliding_window": True,
            "sliding_window": 4096,
            "max_window_layers": 2,
        }

        assert parse_config(cfg, name="q").layer_types == ("full_attention",) * 2 + ("sliding_attention",) * 2


class TestMoEAndMLA:
    def test_deepseek_v3_mla(self) -> None:
        """DeepSeek-V3: MLA, q/k head 128+64, v 128; KV latent 512+64 = 576 per token per layer."""
        arch = _parse("deepseek-ai/DeepSeek-V3")

        assert (arch.head_dim, arch.v_head_dim) == (192, 128)
        assert arch.mla.kv_lora_rank + arch.mla.qk_rope_head_dim == 576
        assert arch.mla.q_lora_rank == 1536
        assert arch.attention_kind == "mla"
        assert (arch.moe.num_experts, arch.moe.experts_per_token, arch.moe.moe_intermediate_size) == (
            256,
            8,
            2048,
        )
        assert (arch.moe.num_shared_experts, arch.moe.shared_expert_intermediate_size) == (1, 2048)
        assert tuple(range(3, 61)) == arch.moe.moe_layers  # first_k_dense_replace 3
        assert (arch.quant.method, arch.quant.weight_bits, arch.quant.block_size) == ("fp8", 8, (128, 128))
        assert arch.rope_scaling["rope_type"] == "yarn"  # written with the legacy `type` key

    def test_deepseek_v2_lite_no_q_lora(self) -> None:
        """DeepSeek-V2-Lite: q_lora_rank null, 2 shared experts of 1408, first layer dense."""
        arch = _parse("deepseek-ai/DeepSeek-V2-Lite-Chat")

        assert arch.mla.q_lora_rank is None
        assert (arch.moe.num_shared_experts, arch.moe.shared_expert_intermediate_size) == (2, 2 * 1408)
        assert tuple(range(1, 27)) == arch.moe.moe_layers

    def test_qwen2_moe_shared_expert(self) -> None:
        """Qwen2-57B-A14B: 64 experts top-8 of 2560 plus one shared expert of 20480."""
        moe = _parse("Qwen/Qwen2-57B-A14B").moe

        assert (
            moe.num_experts,
            moe.experts_per_token,
            moe.moe_intermediate_size,
            moe.num_shared_experts,
            moe.shared_expert_intermediate_size,
        ) == (64, 8, 2560, 1, 20480)

    def test_qwen_mlp_only_layers_and_sparse_step(self) -> None:
        """decoder_sparse_step 2 and mlp_only_layers [1] leave MoE only on layers 3 and 5."""
        cfg = {
            **TINY,
            "num_hidden_layers": 6,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "decoder_sparse_step": 2,
            "mlp_only_layers": [1],
        }

        assert parse_config(cfg, name="q").moe.moe_layers == (3, 5)

    def test_mixtral_every_layer(self) -> None:
        """Mixtral-8x7B: num_local_experts 8, top-2, expert size = intermediate_size."""
        moe = _parse("mistralai/Mixtral-8x7B-v0.1").moe

        assert (moe.num_experts, moe.experts_per_token, moe.moe_intermediate_size, len(moe.moe_layers)) == (
            8,
            2,
            14336,
            32,
        )


class TestQuantization:
    def test_modelopt_fp8_from_hf_quant_config(self) -> None:
        """nvidia Llama-3.1-70B-FP8: hf_quant_config.json quant_algo FP8, FP8 KV, lm_head excluded."""
        quant = _parse("nvidia/Llama-3.1-70B-Instruct-FP8").quant

        assert (quant.method, quant.weight_bits, quant.kv_cache_quant, quant.modules_not_converted) == (
            "modelopt",
            8,
            "FP8",
            ("lm_head",),
        )

    def test_modelopt_nvfp4(self) -> None:
        """nvidia Qwen3-235B-NVFP4: modelopt_fp4, 4 bits, group 16."""
        quant = _parse("nvidia/Qwen3-235B-A22B-NVFP4").quant

        assert (quant.method, quant.weight_bits, quant.group_size, quant.kv_cache_quant) == (
            "modelopt_fp4",
            4,
            16,
            "FP8",
        )

    def test_qwen3_fp8_block(self) -> None:
        """Qwen3-30B-A3B-FP8: fp8 with [128, 128] blocks and a modules_to_not_convert list."""
        quant = _parse("Qwen/Qwen3-30B-A3B-FP8").quant

        assert (quant.method, quant.block_size, quant.format) == ("fp8", (128, 128), "e4m3")
        assert "lm_head" in quant.modules_not_converted

    @pytest.mark.parametrize(
        ("qcfg", "expected"),
        [
            pytest.param(
                {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
                ("awq", 4, 128, False, "gemm"),
                id="awq",
            ),
            pytest.param(
                {"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True, "desc_act": False},
                ("gptq", 4, 128, True, None),
                id="gptq",
            ),
            pytest.param(
                {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
                ("bitsandbytes", 4, None, None, "nf4"),
                id="bnb",
            ),
            pytest.param(
                {
                    "quant_method": "compressed-tensors",
                    "format": "float-quantized",
                    "config_groups": {
                        "group_0": {"weights": {"num_bits": 8, "type": "float", "symmetric": True}}
                    },
                    "ignore": ["lm_head"],
                },
                ("compressed-tensors", 8, None, True, "float-quantized"),
                id="compressed-tensors",
            ),
        ],
    )
    def test_quantization_config_shapes(self, qcfg: dict[str, Any], expected: tuple[Any, ...]) -> None:
        """quantization_config shapes map to vLLM method names with bits, group and format."""
        quant = parse_config({**TINY, "quantization_config": qcfg}, name="q").quant

        assert expected == (quant.method, quant.weight_bits, quant.group_size, quant.symmetric, quant.format)

    def test_compression_config_key(self) -> None:
        """An older `compression_config` without quant_method is compressed-tensors."""
        quant = parse_config({**TINY, "compression_config": {"format": "int-quantized"}}, name="q").quant

        assert quant.method == "compressed-tensors"


class TestSpellings:
    def test_transformers_5_rope_parameters_and_dtype(self) -> None:
        """transformers>=5: rope_parameters replaces rope_scaling+rope_theta, dtype replaces torch_dtype."""
        cfg = {
            **TINY,
            "dtype": "float16",
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": 4.0,
                "rope_theta": 1e6,
                "original_max_position_embeddings": 32768,
            },
        }
        del cfg["torch_dtype"]
        arch = parse_config(cfg, name="t5")

        assert (arch.config_dtype, arch.rope_theta, arch.rope_scaling["rope_type"]) == (
            "float16",
            1e6,
            "yarn",
        )

    def test_rope_parameters_default_means_no_scaling(self) -> None:
        """rope_parameters with rope_type default carries only the theta."""
        cfg = {**TINY, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
        arch = parse_config(cfg, name="t5")

        assert (arch.rope_scaling, arch.rope_theta) == (None, 10000.0)

    def test_no_dtype_is_float32(self) -> None:
        """No torch_dtype/dtype anywhere: vLLM assumes float32."""
        cfg = dict(TINY)
        del cfg["torch_dtype"]

        assert parse_config(cfg, name="x").config_dtype == "float32"

    @pytest.mark.parametrize(
        ("key", "value", "expected"),
        [
            ("n_head_kv", 2, 2),
            ("num_kv_heads", 2, 2),
            ("multi_query_group_num", 2, 2),
            ("num_attention_groups", 1, 1),
        ],
    )
    def test_kv_head_aliases(self, key: str, value: int, expected: int) -> None:
        """Every KV-head alias vLLM reads is honoured; none at all means MHA."""
        assert expected == parse_config({**TINY, key: value}, name="x").num_kv_heads
        assert parse_config(TINY, name="x").num_kv_heads == 4

    def test_hidden_size_per_head(self) -> None:
        """hidden_size_per_head is the second head-size source (PLaMo)."""
        assert parse_config({**TINY, "hidden_size_per_head": 32}, name="x").head_dim == 32

    def test_all_length_keys_recorded(self) -> None:
        """Every length key present is kept; vLLM takes their minimum."""
        arch = parse_config({**TINY, "max_position_embeddings": 8192, "seq_length": 4096}, name="x")

        assert arch.max_length_keys == {"max_position_embeddings": 8192, "seq_length": 4096}
        assert derived_max_model_len(arch) == 4096

    def test_safetensors_total(self) -> None:
        """safetensors_total_bytes comes from the index's metadata.total_size."""
        arch = parse_config(TINY, name="x", safetensors_index={"metadata": {"total_size": 16060522496}})

        assert arch.safetensors_total_bytes == 16060522496


class TestDerivedMaxModelLen:
    @pytest.mark.parametrize(
        ("model_id", "expected"),
        [
            pytest.param("meta-llama/Llama-3.1-8B-Instruct", 131072, id="llama3-rope-not-multiplied"),
            pytest.param("Qwen/Qwen3-8B", 40960, id="qwen3"),
            pytest.param("deepseek-ai/DeepSeek-V3", 163840, id="deepseek-yarn"),
            pytest.param("google/gemma-3-4b-it", 131072, id="gemma3-skips-linear-x8"),
            pytest.param("meta-llama/Llama-4-Scout-17B-16E-Instruct", 10485760, id="llama4"),
            pytest.param("tiiuae/falcon-7b", 2048, id="no-length-key"),
            pytest.param("microsoft/Phi-3.5-mini-instruct", 131072, id="longrope-not-multiplied"),
        ],
    )
    def test_bundled(self, model_id: str, expected: int) -> None:
        """vLLM 0.33 derived lengths for the bundled configs."""
        assert expected == derived_max_model_len(_parse(model_id))

    def test_yarn_033_vs_029(self) -> None:
        """Qwen3-8B + YaRN x4 from 32768: 0.33 keeps 40960, <=0.29 gives 32768 x 4 = 131072."""
        arch = _parse(
            "Qwen/Qwen3-8B",
            rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
        )

        assert derived_max_model_len(arch, rope_rule="0.33") == 40960
        assert derived_max_model_len(arch, rope_rule="0.29") == 131072

    def test_linear_rope_multiplies(self) -> None:
        """A linear factor multiplies the derived length outside gemma3 (4096 x 2)."""
        arch = parse_config(
            {**TINY, "max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2.0}},
            name="x",
        )

        assert derived_max_model_len(arch) == 8192

    def test_model_max_length_wins(self) -> None:
        """model_max_length wins outright, even when larger than the other keys (Cohere)."""
        arch = parse_config({**TINY, "max_position_embeddings": 8192, "model_max_length": 131072}, name="x")

        assert derived_max_model_len(arch) == 131072

    def test_longrope_default_is_original(self) -> None:
        """Phi-3.5 (LongRoPE): vLLM defaults max_model_len to original_max_position_embeddings."""
        assert default_max_model_len(_parse("microsoft/Phi-3.5-mini-instruct")) == 4096

    def test_unknown_rule(self) -> None:
        """Only the two documented rope rules are accepted."""
        with pytest.raises(ValueError, match="rope_rule"):
            derived_max_model_len(parse_config(TINY, name="x"), rope_rule="0.1")


class TestBadInputs:
    @pytest.mark.parametrize(
        ("change", "field", "shown"),
        [
            pytest.param({"num_hidden_layers": -3}, "num_hidden_layers", "-3", id="negative-layers"),
            pytest.param({"num_hidden_layers": 0}, "num_hidden_layers", "0", id="zero-layers"),
            pytest.param({"num_hidden_layers": 200000}, "num_hidden_layers", "200000", id="absurd-layers"),
            pytest.param({"hidden_size": 10**7}, "hidden_size", "10000000", id="absurd-hidden"),
            pytest.param({"hidden_size": 64.5}, "hidden_size", "64.5", id="fractional"),
            pytest.param({"hidden_size": "64"}, "hidden_size", "'64'", id="string"),
            pytest.param({"hidden_size": True}, "hidden_size", "True", id="bool"),
            pytest.param({"vocab_size": float("nan")}, "vocab_size", "nan", id="nan"),
            pytest.param({"num_attention_heads": float("inf")}, "num_attention_heads", "inf", id="inf"),
            pytest.param({"torch_dtype": "float8"}, "torch_dtype", "'float8'", id="dtype"),
            pytest.param({"max_position_embeddings": -1}, "max_position_embeddings", "-1", id="length"),
            pytest.param({"num_key_value_heads": 0}, "num_key_value_heads", "0", id="kv-zero"),
        ],
    )
    def test_bad_value_names_field_and_value(self, change: dict[str, Any], field: str, shown: str) -> None:
        """A bad value raises one line: '<file>: <field>: expected ..., got <value>'."""
        cfg = {**TINY, **change}

        with pytest.raises(ModelConfigError) as info:
            parse_config(cfg, name="x", source="local:/models/x")
        message = str(info.value)
        assert message.startswith(f"/models/x/config.json: {field}: expected ")
        assert message.endswith(f"got {shown}")
        assert "\n" not in message

    @pytest.mark.parametrize(
        "missing", ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]
    )
    def test_missing_required(self, missing: str) -> None:
        """A missing required key is named, with the aliases looked for."""
        cfg = dict(TINY)
        del cfg[missing]

        with pytest.raises(ModelConfigError, match=f"^catalog:a/b/config.json: {missing}: missing"):
            parse_config(cfg, name="a/b", source="catalog:a/b")

    def test_nested_field_is_qualified(self) -> None:
        """A bad value inside text_config is named text_config.<field>."""
        cfg = copy.deepcopy(_config("google/gemma-3-4b-it"))
        cfg["text_config"]["num_hidden_layers"] = -1

        with pytest.raises(ModelConfigError, match=r"text_config\.num_hidden_layers: expected"):
            parse_config(cfg, name="g")

    @pytest.mark.parametrize("config", [[1, 2], "x", None, 3])
    def test_non_dict(self, config: Any) -> None:
        """A config that is not a JSON object is refused."""
        with pytest.raises(ModelConfigError, match="expected a JSON object"):
            parse_config(config, name="x")

    def test_layer_types_wrong_length(self) -> None:
        """An explicit layer_types shorter than the layer count is refused."""
        with pytest.raises(ModelConfigError, match="layer_types"):
            parse_config({**TINY, "layer_types": ["full_attention"]}, name="x")

    def test_top_k_above_experts(self) -> None:
        """num_experts_per_tok larger than the expert count is refused."""
        with pytest.raises(ModelConfigError, match="num_experts_per_tok"):
            parse_config({**TINY, "num_local_experts": 2, "num_experts_per_tok": 4}, name="x")
