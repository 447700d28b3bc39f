"""ModelArch: the normalised architecture of one model, built from a config.json dict.

Pure: no I/O. `parse_config` turns the many spellings found in real Hugging Face configs
(text_config nesting, legacy Falcon keys, missing head_dim, rope renames, transformers>=5
`rope_parameters`/`dtype`) into one frozen value that the calculators consume.

Layer kinds (ModelArch.layer_types) use vLLM's vocabulary:
  "full_attention"     ordinary causal attention over the whole context
  "sliding_attention"  attention limited to `sliding_window` tokens
  "chunked_attention"  chunked local attention (Llama-4, `attention_chunk_size`)
  "linear_attention"   gated-delta-net / linear attention with a recurrent state (Qwen3-Next)
  "mamba"              Mamba/Mamba2 SSM layer (state, no KV)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LAYER_KINDS = ("full_attention", "sliding_attention", "chunked_attention", "linear_attention", "mamba")


@dataclass(frozen=True, kw_only=True)
class QuantInfo:
    """Checkpoint quantization as declared by the model files (not online --quantization)."""

    method: str  # vLLM quantization name: fp8, compressed-tensors, awq, gptq, mxfp4, modelopt, modelopt_fp4, ...
    weight_bits: float | None = None  # 8 for fp8/int8, 4 for int4/fp4
    group_size: int | None = None  # AWQ/GPTQ/NVFP4 group size
    block_size: tuple[int, int] | None = None  # FP8 block quant, e.g. (128, 128)
    format: str | None = None  # e.g. "float-quantized", "int-quantized", "nvfp4", "e4m3"
    symmetric: bool | None = None
    desc_act: bool | None = None
    modules_not_converted: tuple[str, ...] = ()  # kept in the unquantized dtype
    kv_cache_quant: str | None = None  # e.g. "FP8" from hf_quant_config.json
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, kw_only=True)
class MoEInfo:
    """Mixture-of-experts geometry."""

    num_experts: int  # routed experts
    experts_per_token: int  # top-k
    moe_intermediate_size: int  # per routed expert
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0  # total over the shared experts
    moe_layers: tuple[int, ...] = ()  # indices of layers whose MLP is MoE (others are dense)


@dataclass(frozen=True, kw_only=True)
class MLAInfo:
    """Multi-head latent attention (DeepSeek V2/V3): compressed KV, not split across TP."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True, kw_only=True)
class SSMInfo:
    """Mamba / linear-attention recurrent state geometry (per layer of that kind)."""

    kind: str  # "mamba1" | "mamba2" | "gdn"
    state_size: int = 0  # N (d_state)
    conv_kernel: int = 4
    expand: int = 2
    intermediate_size: int = 0  # d_inner = expand * hidden for Mamba
    num_heads: int = 0  # mamba2 heads / GDN value heads
    head_dim: int = 0
    n_groups: int = 1
    # GDN (Qwen3-Next): key heads/dims and value heads/dims
    num_k_heads: int = 0
    k_head_dim: int = 0
    num_v_heads: int = 0
    v_head_dim: int = 0


@dataclass(frozen=True, kw_only=True)
class ModelArch:
    """Everything the memory and performance calculators need to know about a model."""

    name: str  # id as the user gave it (hub id, catalog id or directory)
    model_type: str  # config model_type of the text model (llama, qwen3, falcon, ...)
    architectures: tuple[str, ...]
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int  # per-head size of q/k (vLLM get_head_size)
    v_head_dim: int  # per-head size of v (== head_dim except MLA)
    intermediate_size: int  # dense MLP intermediate size (0 if none)
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int | None  # None when the config has no length key at all
    config_dtype: str  # "bfloat16" | "float16" | "float32" as declared (torch_dtype/dtype)
    layer_types: tuple[str, ...]  # one entry per layer, from LAYER_KINDS
    sliding_window: int | None = None
    attention_chunk_size: int | None = None
    rope_scaling: dict[str, Any] | None = None  # normalised: always has "rope_type"
    rope_theta: float | None = None
    partial_rotary_factor: float = 1.0
    gated_mlp: bool = True  # gate+up+down (3 matrices) vs up+down (2)
    attention_bias: bool = False  # q/k/v (and o for some) carry biases
    norm_has_bias: bool = False  # LayerNorm (weight+bias) vs RMSNorm (weight only)
    norms_per_layer: int = 2
    qk_norm: bool = False  # per-head q/k RMSNorm (Qwen3, gemma-3)
    max_length_keys: dict[str, int] = field(default_factory=dict)  # every length key found (vLLM takes the min)
    moe: MoEInfo | None = None
    mla: MLAInfo | None = None
    ssm: SSMInfo | None = None
    quant: QuantInfo | None = None
    is_multimodal: bool = False  # text_config nested under a vision/audio wrapper
    safetensors_total_bytes: int | None = None  # exact bytes from model.safetensors.index.json metadata
    safetensors_params: dict[str, int] | None = None  # dtype -> parameter count, from hub safetensors metadata
    source: str = ""  # where the config came from: "local:/path", "hub:org/name", "catalog:org/name"
    provenance: str | None = None  # catalog provenance tag (VERBATIM, CONVERTED, ...)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def attention_kind(self) -> str:
        """A one-word summary for facts and reports: mla | hybrid | sliding | chunked | ssm | full."""
        kinds = set(self.layer_types)
        if self.mla is not None:
            return "mla"
        if kinds <= {"mamba", "linear_attention"}:
            return "ssm"
        if kinds & {"mamba", "linear_attention"}:
            return "hybrid"
        if "chunked_attention" in kinds:
            return "chunked"
        if "sliding_attention" in kinds:
            return "sliding"
        return "full"
