"""ModelArch: the normalised architecture of one model, built from a config.json dict.

Pure: no I/O. `parse_config` turns the many spellings found in real Hugging Face configs
(text_config nesting, legacy Falcon keys, missing head_dim, rope renames, transformers>=5
`rope_parameters`/`dtype`) into one frozen value that the calculators consume.

Layer kinds (ModelArch.layer_types) use vLLM's vocabulary:
  "full_attention"     ordinary causal attention over the whole context
  "sliding_attention"  attention limited to `sliding_window` tokens
  "chunked_attention"  chunked local attention (Llama-4, `attention_chunk_size`)
  "linear_attention"   linear attention with a constant-size recurrent state: gated delta net (Qwen3-Next) or
                       MiniMax lightning attention (MiniMax-Text-01 / M1)
  "mamba"              Mamba/Mamba2 SSM layer (state, no KV)
  "mlp"                no token mixer at all: the layer is only an MLP or MoE block (Nemotron-H '-' and 'E'
                       layers); it holds neither KV cache nor state
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from planner.errors import ModelConfigError

LAYER_KINDS = ("full_attention", "sliding_attention", "chunked_attention", "linear_attention", "mamba", "mlp")


@dataclass(frozen=True, kw_only=True)
class QuantInfo:
    """Checkpoint quantization as declared by the model files (not online --quantization)."""

    # vLLM quantization name: fp8, compressed-tensors, awq, gptq, mxfp4, modelopt, modelopt_fp4, ...
    method: str
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
    # Nemotron-3 latent MoE (`moe_latent_size`): routed experts work in a smaller latent width, reached through
    # replicated fc1/fc2 latent projections (vllm nemotron_h.py NemotronHMoE); 0 = experts work at hidden_size.
    latent_size: int = 0
    router_bias: bool = False  # the gate's e_score_correction_bias (float32), noaux_tc-style routing
    router_fp32: bool = False  # the router gate weight is held in float32 (GateLinear params_dtype=float32)


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

    kind: str  # "mamba1" | "mamba2" | "gdn" | "lightning" (MiniMax linear attention: heads x head_dim^2 state)
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
    conv_bias: bool = True  # Mamba conv1d carries a bias (use_conv_bias)
    # dtype of the temporal (SSM) state when vLLM does not keep it in the model dtype: NemotronH's
    # mamba_ssm_cache_dtype, "float32" unless the config says otherwise (vllm/model_executor/models/config.py
    # NemotronHForCausalLMConfig). None = the model dtype (mamba_ssm_cache_dtype "auto").
    ssm_state_dtype: str | None = None


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
    qk_norm: bool = False  # per-head q/k RMSNorm (Qwen3, gemma-3, GLM-4.5 use_qk_norm)
    # each layer holds ONE block, a token mixer or an MLP/MoE, never both (Nemotron-H hybrid_override_pattern)
    mixer_xor_mlp: bool = False
    rope: bool = True  # False: the attention layers apply no rotary embedding (Nemotron-H), so no cos/sin cache
    # every length key found (vLLM takes the min)
    max_length_keys: dict[str, int] = field(default_factory=dict)
    moe: MoEInfo | None = None
    mla: MLAInfo | None = None
    ssm: SSMInfo | None = None
    quant: QuantInfo | None = None
    is_multimodal: bool = False  # text_config nested under a vision/audio wrapper
    safetensors_total_bytes: int | None = None  # exact bytes from model.safetensors.index.json metadata
    # dtype -> parameter count, from hub safetensors metadata
    safetensors_params: dict[str, int] | None = None
    source: str = ""  # where the config came from: "local:/path", "hub:org/name", "catalog:org/name"
    provenance: str | None = None  # catalog provenance tag (VERBATIM, CONVERTED, ...)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def attention_kind(self) -> str:
        """A one-word summary for facts and reports: mla | hybrid | sliding | chunked | ssm | full."""
        kinds = set(self.layer_types) - {"mlp"}
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


# ---------------------------------------------------------------------------------------------
# Parsing: config.json dict -> ModelArch
# ---------------------------------------------------------------------------------------------

# Sanity bounds for input validation (not policy): values beyond these are corrupt files.
_MAX_LAYERS = 100_000
_MAX_WIDTH = 10**6  # hidden size, intermediate sizes, head dims
_MAX_COUNT = 10**6  # heads, experts
_MAX_VOCAB = 10**8
_MAX_LENGTH = 10**12  # context-length keys

_NESTED_TEXT_KEYS = ("text_config", "llm_config", "language_config")

# vllm/config/model.py derive_max_model_len_and_key: the keys vLLM takes the minimum of.
MAX_LENGTH_KEYS = (
    "max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
    "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len",
)

# vllm model_arch_config_convertor.get_total_num_kv_heads: alias keys, in vLLM's order.
_KV_HEAD_KEYS = ("n_head_kv", "num_kv_heads", "num_key_value_heads", "multi_query_group_num",
                 "num_attention_groups")
_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
_HEAD_KEYS = ("num_attention_heads", "n_head", "n_heads")
_INTERMEDIATE_KEYS = ("intermediate_size", "ffn_hidden_size", "n_inner")
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_TOPK_KEYS = ("num_experts_per_tok", "experts_per_token", "num_experts_per_token", "moe_topk")

# transformers Gemma3TextConfig.__init__ defaults (transformers/models/gemma3/configuration_gemma3.py):
# the published gemma-3 text_config omits every key equal to its default.
_GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "max_position_embeddings": 131_072, "rope_theta": 1_000_000.0, "sliding_window": 4096,
    "sliding_window_pattern": 6, "tie_word_embeddings": True, "query_pre_attn_scalar": 256,
}
# transformers Gemma2Config.__init__ default sliding_window (configuration_gemma2.py).
_GEMMA2_DEFAULTS: dict[str, Any] = {"sliding_window": 4096, "tie_word_embeddings": True}
_CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": _GEMMA3_TEXT_DEFAULTS, "gemma2": _GEMMA2_DEFAULTS,
}

# transformers config classes whose `tie_word_embeddings` default is False (the base
# PretrainedConfig default is True). Used only when neither the text nor the root config says.
_UNTIED_BY_DEFAULT = frozenset({
    "llama", "llama4_text", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
    "qwen3_next", "deepseek_v2", "deepseek_v3", "phi3", "jamba", "gpt_oss", "mamba2", "granite",
    "nemotron_h", "glm4_moe", "glm_moe_dsa", "kimi_k2", "minimax_m2", "minimax_m1", "minimax_text_01",
})

# Model types with a plain 2-matrix MLP (fc_in/up + fc_out/down) rather than gate+up+down.
_NON_GATED_MLP = frozenset({
    "falcon", "gpt2", "gpt_bigcode", "gpt_neox", "gptj", "opt", "bloom", "mpt", "phi", "starcoder2",
    "nemotron_h",  # relu2 up/down MLPs and experts (vllm nemotron_h.py NemotronHMLP, is_non_gated_moe)
})
# Model types whose norms are LayerNorm (weight + bias) rather than RMSNorm.
_LAYERNORM_BIAS = frozenset({
    "falcon", "gpt2", "gpt_bigcode", "gpt_neox", "gptj", "opt", "bloom", "phi", "starcoder2", "stablelm",
})
# Model types with per-head q/k RMSNorm weights (Llama-4's use_qk_norm is a weightless L2 norm).
_QK_NORM = frozenset({"qwen3", "qwen3_moe", "qwen3_next", "gemma3", "gemma3_text", "olmo2", "olmoe"})
# Model types whose q/k norms exist only when the config's use_qk_norm says so (GLM-4.5: per head; MiniMax-M2:
# over all heads, qk_norm_type "per_layer").
_QK_NORM_OPTIONAL = frozenset({"glm4_moe", "minimax_m2"})
# MiniMax-Text-01 / M1 lightning-attention hybrids (vllm minimax_text_01.py, registered for MiniMaxForCausalLM,
# MiniMaxText01ForCausalLM and MiniMaxM1ForCausalLM up to vLLM 0.23).
_MINIMAX_LINEAR = frozenset({"minimax", "minimax_text_01", "minimax_m1", "MiniMaxM1", "MiniMaxText01"})
# Model types that apply DeepSeek's first_k_dense_replace / moe_layer_freq MoE placement
# (vllm deepseek_v2.py DeepseekV2DecoderLayer, glm4_moe.py Glm4MoeDecoderLayer).
_FIRST_K_DENSE = frozenset({"kimi_k2", "glm4_moe", "glm4_moe_lite", "glm_moe_dsa", "kimi_linear"})
# Qwen2-family attention: q/k/v projections always carry a bias (HF Qwen2Attention, bias=True).
_QKV_BIAS = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"})
_SLIDING_OFF_BY_DEFAULT = frozenset({"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next"})
_PURE_SSM = frozenset({"mamba", "mamba2", "falcon_mamba"})
# vLLM's RWConfig registers the legacy Falcon model types under model_type "falcon".
_MODEL_TYPE_ALIASES = {"RefinedWeb": "falcon", "RefinedWebModel": "falcon"}

_DTYPES = {
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "float32": "float32", "fp32": "float32", "float": "float32",
}

_LAYER_TYPE_ALIASES = {
    "full_attention": "full_attention", "attention": "full_attention", "global": "full_attention",
    "sliding_attention": "sliding_attention", "sliding": "sliding_attention",
    "chunked_attention": "chunked_attention", "linear_attention": "linear_attention",
    "mamba": "mamba",
    "mlp": "mlp", "moe": "mlp",  # Nemotron-H layers_block_type: a layer that is only an MLP / MoE block
}


class _Cfg:
    """A config dict plus the place it came from, for one-line error messages."""

    def __init__(self, data: dict[str, Any], where: str, prefix: str = "") -> None:
        self.data = data
        self.where = where
        self.prefix = prefix

    def fail(self, key: str, expected: str, value: Any) -> ModelConfigError:
        return ModelConfigError(f"{self.where}: {self.prefix}{key}: expected {expected}, got {value!r}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def first_key(self, keys: Iterable[str]) -> str | None:
        return next((k for k in keys if self.data.get(k) is not None), None)

    def get_int(self, key: str, *, default: int | None = None, lo: int = 1,
                hi: int = _MAX_WIDTH) -> int | None:
        """An integer in [lo, hi]; integral floats (4096.0) are accepted, bools and NaN are not."""
        value = self.data.get(key)
        if value is None:
            return default
        ok = not isinstance(value, bool) and (
            isinstance(value, int)
            or (isinstance(value, float) and math.isfinite(value) and value.is_integer()))
        if not ok or not lo <= int(value) <= hi:
            what = "a positive integer" if lo == 1 else f"an integer >= {lo}"
            raise self.fail(key, f"{what} (at most {hi})" if ok else what, value)
        return int(value)

    def req_int(self, keys: Iterable[str], *, lo: int = 1, hi: int = _MAX_WIDTH) -> int:
        keys = tuple(keys)
        key = self.first_key(keys)
        if key is None:
            raise ModelConfigError(
                f"{self.where}: {self.prefix}{keys[0]}: missing"
                f" (also looked for {', '.join(keys[1:]) or '-'})"
                if len(keys) > 1 else f"{self.where}: {self.prefix}{keys[0]}: missing")
        value = self.get_int(key, lo=lo, hi=hi)
        assert value is not None  # first_key found a non-None value
        return value

    def get_float(self, key: str, default: float | None = None) -> float | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, "a finite number", value)
        return float(value)

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value

    def int_list(self, key: str, *, lo: int = 0, hi: int = _MAX_LAYERS) -> list[int] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.fail(key, "a list of integers", value)
        sub = _Cfg({str(i): v for i, v in enumerate(value)}, self.where, f"{self.prefix}{key}[")
        return [sub.get_int(str(i), lo=lo, hi=hi) or 0 for i in range(len(value))]


def config_where(name: str, source: str) -> str:
    """The file an error message names: '/path/config.json', 'hub:org/name/config.json', ..."""
    kind, _, ref = source.partition(":")
    if not ref:
        ref, kind = (source or name), ""
    path = ref if ref.endswith(".json") else f"{ref.rstrip('/')}/config.json"
    return path if kind in ("", "local") else f"{kind}:{path}"


def _text_config(config: dict[str, Any], where: str) -> tuple[_Cfg, bool]:
    """The LLM part of the config (nested under text_config/llm_config for multimodal wrappers)."""
    for key in _NESTED_TEXT_KEYS:
        nested = config.get(key)
        if nested is None:
            continue
        if not isinstance(nested, dict):
            raise ModelConfigError(f"{where}: {key}: expected an object, got {nested!r}")
        data = dict(nested)
        if "model_type" not in data and config.get("model_type") == "gemma3":
            data["model_type"] = "gemma3_text"  # Gemma3Config.sub_configs["text_config"] is Gemma3TextConfig
        return _Cfg(data, where, f"{key}."), True
    # Phi-3-vision / Phi-3.5-vision describe their CLIP encoder under img_processor / embd_layer, not vision_config
    multimodal = any(k in config for k in ("vision_config", "audio_config", "img_processor", "embd_layer"))
    return _Cfg(dict(config), where), multimodal


def _apply_defaults(text: _Cfg, model_type: str) -> None:
    """Fill keys a transformers config class would default (sparse gemma-3 text_config)."""
    for key, value in _CONFIG_DEFAULTS.get(model_type, {}).items():
        text.data.setdefault(key, value)


def _model_type(text: _Cfg, root: dict[str, Any]) -> str:
    value = text.get("model_type", root.get("model_type", ""))
    if not isinstance(value, str):
        raise text.fail("model_type", "a string", value)
    return _MODEL_TYPE_ALIASES.get(value, value)


def _architectures(root: _Cfg) -> tuple[str, ...]:
    value = root.get("architectures", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise root.fail("architectures", "a list of strings", value)
    return tuple(value)


def _config_dtype(root: _Cfg, text: _Cfg) -> str:
    """vLLM _get_and_verify_dtype step 1: root dtype, else text-config dtype, else float32."""
    for cfg in (root, text):
        for key in ("dtype", "torch_dtype"):
            value = cfg.get(key)
            if value is None:
                continue
            norm = value.removeprefix("torch.").lower() if isinstance(value, str) else None
            if norm not in _DTYPES:
                raise cfg.fail(key, "one of bfloat16, float16, float32", value)
            return _DTYPES[norm]
    return "float32"  # vLLM's rule when no dtype is declared


def _rope(text: _Cfg, root: _Cfg) -> tuple[dict[str, Any] | None, float | None, float | None]:
    """(normalised rope scaling dict or None, rope_theta, partial_rotary_factor from rope_parameters)."""
    params = text.get("rope_parameters")
    key = "rope_parameters"
    if params is None:
        params, key = text.get("rope_scaling"), "rope_scaling"
    if params is None:
        return None, None, None
    if not isinstance(params, dict):
        raise text.fail(key, "an object", params)
    if "rope_type" not in params and "type" not in params and isinstance(params.get("full_attention"), dict):
        params = params["full_attention"]  # transformers>=5 per-layer-type rope_parameters (gemma-3)
    rope = dict(params)
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if not isinstance(rope_type, str):
        raise text.fail(f"{key}.rope_type", "a string", rope_type)
    rope["rope_type"] = rope_type
    theta = _Cfg(rope, text.where, f"{text.prefix}{key}.").get_float("rope_theta")
    partial = _Cfg(rope, text.where, f"{text.prefix}{key}.").get_float("partial_rotary_factor")
    for pos_key in ("original_max_position_embeddings",):  # Phi-3.5 keeps it at the top level
        for cfg in (text, root):
            if pos_key not in rope and cfg.has(pos_key):
                rope[pos_key] = cfg.get_int(pos_key, hi=_MAX_LENGTH)
    if rope_type == "default" and "factor" not in rope:
        return None, theta, partial
    if "factor" in rope:
        _Cfg(rope, text.where, f"{text.prefix}{key}.").get_float("factor")
    return rope, theta, partial


def _length_keys(text: _Cfg) -> dict[str, int]:
    found: dict[str, int] = {}
    for key in MAX_LENGTH_KEYS:
        value = text.get_int(key, hi=_MAX_LENGTH)
        if value is not None:
            found[key] = value
    return found


def _num_kv_heads(text: _Cfg, model_type: str, num_heads: int) -> int:
    """vLLM get_total_num_kv_heads: legacy Falcon multi_query -> 1, then the alias keys, else MHA."""
    if model_type == "falcon" and not text.get_bool("new_decoder_architecture", False) \
            and text.get_bool("multi_query", False):
        return 1
    key = text.first_key(_KV_HEAD_KEYS)
    if key is None:
        return num_heads
    return text.get_int(key, hi=_MAX_COUNT) or num_heads


def _head_dim(text: _Cfg, hidden: int, num_heads: int) -> int:
    """vLLM get_head_size: head_dim if > 0, else hidden_size_per_head, else hidden // heads."""
    for key in ("head_dim", "hidden_size_per_head"):
        value = text.get_int(key, lo=0)
        if value:
            return value
    if num_heads <= 0:
        return 0
    return hidden // num_heads


def _num_layers(text: _Cfg, model_type: str) -> int:
    """num_hidden_layers; a NemotronH config may give only its per-layer block list (NemotronHConfig derives
    num_hidden_layers from len(layers_block_type) or len(hybrid_override_pattern))."""
    if model_type == "nemotron_h" and text.first_key(_LAYER_KEYS) is None:
        for key in ("layers_block_type", "hybrid_override_pattern"):
            value = text.get(key)
            if isinstance(value, (list, str)) and 0 < len(value) <= _MAX_LAYERS:
                return len(value)
    return text.req_int(_LAYER_KEYS, hi=_MAX_LAYERS)


def _nemotron_h_head_dim(text: _Cfg) -> int:
    """NemotronHAttention's head size: config.head_dim, which the NemotronH config class defaults to 128 (the
    56B's config.json spells it attention_head_dim, which that class does not read)."""
    return text.get_int("head_dim") or text.get_int("attention_head_dim") or 128


def _is_pure_ssm(text: _Cfg, model_type: str) -> bool:
    if model_type in _PURE_SSM:
        return True
    has_heads = text.first_key(_HEAD_KEYS) is not None
    return not has_heads and any(text.has(k) for k in ("state_size", "ssm_state_size", "d_state"))


# --------------------------------------------------------------------------- layer kinds


def _pattern(n: int, every: int, hit: str, other: str) -> tuple[str, ...]:
    """`hit` on every `every`-th layer (1-based: layers every-1, 2*every-1, ...), `other` elsewhere."""
    return tuple(hit if (i + 1) % every == 0 else other for i in range(n))


def _explicit_layer_types(text: _Cfg, n: int) -> tuple[str, ...] | None:
    value = text.get("layer_types", text.get("layers_block_type"))
    if value is None:
        return None
    key = "layer_types" if text.has("layer_types") else "layers_block_type"
    if not isinstance(value, list) or len(value) < n:
        raise text.fail(key, f"a list of {n} layer kinds", value)
    kinds = []
    for item in value[:n]:
        if item not in _LAYER_TYPE_ALIASES:
            raise text.fail(key, f"layer kinds among {', '.join(sorted(_LAYER_TYPE_ALIASES))}", item)
        kinds.append(_LAYER_TYPE_ALIASES[item])
    return tuple(kinds)


def _sliding_window(text: _Cfg, model_type: str) -> int | None:
    """The window, unless the config switches it off (Qwen2/3 `use_sliding_window: false`;
    Qwen2Config and its descendants default use_sliding_window to False)."""
    if not text.get_bool("use_sliding_window", model_type not in _SLIDING_OFF_BY_DEFAULT):
        return None
    return text.get_int("sliding_window", hi=_MAX_LENGTH)


def _llama4_layers(text: _Cfg, n: int) -> tuple[str, ...]:
    """Llama4TextConfig: rope layers use chunked attention; NoPE layers (no_rope_layers[i] == 0,
    by default every no_rope_layer_interval-th = 4th layer) attend over the full context."""
    if not text.has("attention_chunk_size"):
        return ("full_attention",) * n
    flags = text.int_list("no_rope_layers", lo=0, hi=1)
    if flags is not None and len(flags) >= n:
        return tuple("chunked_attention" if f else "full_attention" for f in flags[:n])
    every = text.get_int("no_rope_layer_interval", default=4) or 4  # Llama4TextConfig default
    return _pattern(n, every, "full_attention", "chunked_attention")


def _jamba_layers(text: _Cfg, n: int) -> tuple[str, ...]:
    """JambaConfig.layers_block_type: attention where i % attn_layer_period == attn_layer_offset."""
    period = text.get_int("attn_layer_period", default=8) or 8  # JambaConfig defaults
    offset = text.get_int("attn_layer_offset", default=4, lo=0)
    return tuple("full_attention" if i % period == offset else "mamba" for i in range(n))


_NEMOTRON_H_BLOCKS = {"M": "mamba", "*": "full_attention", "-": "mlp", "E": "mlp"}


def _nemotron_h_pattern(text: _Cfg, n: int) -> str | None:
    """NemotronHConfig.hybrid_override_pattern: one character per layer, M (Mamba2), * (attention), - (MLP),
    E (MoE); vllm nemotron_h.py builds layer i from pattern[i]. None when the config has no pattern."""
    value = text.get("hybrid_override_pattern")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != n or set(value) - set(_NEMOTRON_H_BLOCKS):
        raise text.fail("hybrid_override_pattern", f"{n} characters among M, *, - and E (one per layer)", value)
    return value


def _minimax_attn_types(text: _Cfg, n: int) -> tuple[str, ...] | None:
    """MiniMax attn_type_list: 0 = lightning (linear) attention, 1 = softmax attention, per layer
    (vllm minimax_text_01.py MiniMaxText01Model.decoder_attention_types; MiniMax-M2 lists all 1)."""
    flags = text.int_list("attn_type_list", lo=0, hi=1)
    if flags is None:
        return None
    if len(flags) < n:
        raise text.fail("attn_type_list", f"a list of {n} zeros and ones", text.get("attn_type_list"))
    return tuple("full_attention" if f else "linear_attention" for f in flags[:n])


def _layer_types(text: _Cfg, model_type: str, n: int, pure_ssm: bool,
                 window: int | None) -> tuple[str, ...]:
    if model_type == "nemotron_h":
        pattern = _nemotron_h_pattern(text, n)
        if pattern is not None:
            return tuple(_NEMOTRON_H_BLOCKS[c] for c in pattern)
    explicit = _explicit_layer_types(text, n)
    if explicit is not None:
        return explicit
    minimax = _minimax_attn_types(text, n)
    if minimax is not None:
        return minimax
    if pure_ssm:
        return ("mamba",) * n
    if model_type == "gemma2":  # Gemma2Config: even layers sliding, odd layers full
        return _pattern(n, 2, "full_attention", "sliding_attention")
    if model_type in ("gemma3", "gemma3_text", "cohere2"):
        every = text.get_int("sliding_window_pattern", default=6 if "gemma3" in model_type else 4) or 6
        return _pattern(n, every, "full_attention", "sliding_attention")
    if model_type in ("llama4", "llama4_text"):
        return _llama4_layers(text, n)
    if model_type == "qwen3_next":  # Qwen3NextConfig default full_attention_interval 4
        every = text.get_int("full_attention_interval", default=4) or 4
        return _pattern(n, every, "full_attention", "linear_attention")
    if model_type == "jamba":
        return _jamba_layers(text, n)
    if window is None:
        return ("full_attention",) * n
    if text.has("max_window_layers") and text.has("use_sliding_window"):
        # Qwen2Config: with use_sliding_window, layers from max_window_layers on use the window
        first = text.get_int("max_window_layers", lo=0, hi=_MAX_LAYERS) or 0
        return tuple("sliding_attention" if i >= first else "full_attention" for i in range(n))
    # A model-level sliding_window (Mistral v0.1, Phi-3-mini-4k): vLLM's Attention falls back to
    # cache_config.sliding_window for every layer that has no per-layer window.
    return ("sliding_attention",) * n


# --------------------------------------------------------------------------- MoE / MLA / SSM


def _moe_layers(text: _Cfg, model_type: str, n: int) -> tuple[int, ...]:
    if model_type == "nemotron_h":  # the E layers of the pattern (or "moe" in layers_block_type)
        pattern = _nemotron_h_pattern(text, n)
        if pattern is not None:
            return tuple(i for i, c in enumerate(pattern) if c == "E")
        blocks = text.get("layers_block_type")
        return tuple(i for i, b in enumerate(blocks[:n]) if b == "moe") if isinstance(blocks, list) else ()
    if model_type.startswith("deepseek") or model_type in _FIRST_K_DENSE:
        first = text.get_int("first_k_dense_replace", default=0, lo=0, hi=_MAX_LAYERS) or 0
        freq = text.get_int("moe_layer_freq", default=1) or 1
        return tuple(i for i in range(n) if i >= first and i % freq == 0)
    if model_type in ("llama4", "llama4_text"):
        explicit = text.int_list("moe_layers")
        if explicit is not None:
            return tuple(i for i in explicit if i < n)
        step = text.get_int("interleave_moe_layer_step", default=1) or 1
        return tuple(range(step - 1, n, step))
    if model_type == "jamba":
        period = text.get_int("expert_layer_period", default=2) or 2  # JambaConfig defaults
        offset = text.get_int("expert_layer_offset", default=1, lo=0)
        return tuple(i for i in range(n) if i % period == offset)
    if text.has("decoder_sparse_step") or text.has("mlp_only_layers"):
        step = text.get_int("decoder_sparse_step", default=1) or 1
        dense = set(text.int_list("mlp_only_layers") or [])
        return tuple(i for i in range(n) if i not in dense and (i + 1) % step == 0)
    return tuple(range(n))


def _moe(text: _Cfg, model_type: str, n: int) -> MoEInfo | None:
    key = text.first_key(_EXPERT_KEYS)
    experts = text.get_int(key, lo=0, hi=_MAX_COUNT) if key else None
    if not experts:
        return None
    top_k = text.req_int(_TOPK_KEYS, hi=experts)
    llama4 = model_type in ("llama4", "llama4_text")
    if llama4:  # Llama4TextMoe: experts and the shared expert use intermediate_size
        inter = text.req_int(("intermediate_size",))
    else:
        inter = text.req_int(("moe_intermediate_size", *_INTERMEDIATE_KEYS))
    shared_n, shared_size = 0, 0
    if model_type == "nemotron_h":  # NemotronHMoE: n_shared_experts x moe_shared_expert_intermediate_size
        shared_n = text.get_int("n_shared_experts", default=0, lo=0, hi=_MAX_COUNT) or 0
        shared_size = shared_n * (text.get_int("moe_shared_expert_intermediate_size", lo=0) or 0)
    elif text.has("n_shared_experts"):  # DeepSeek: n shared experts of moe_intermediate_size each
        shared_n = text.get_int("n_shared_experts", lo=0, hi=_MAX_COUNT) or 0
        shared_size = shared_n * inter
    elif text.has("shared_expert_intermediate_size"):  # Qwen2-MoE / Qwen3-Next: one shared expert
        shared_size = text.get_int("shared_expert_intermediate_size", lo=0) or 0
        shared_n = 1 if shared_size else 0
    elif llama4:
        shared_n, shared_size = 1, inter
    moe_layers = _moe_layers(text, model_type, n)
    if model_type == "nemotron_h" and not moe_layers:
        return None  # no E layer: the config's expert keys are class defaults, no MoE is built
    return MoEInfo(num_experts=experts, experts_per_token=top_k, moe_intermediate_size=inter,
                   num_shared_experts=shared_n, shared_expert_intermediate_size=shared_size,
                   moe_layers=moe_layers,
                   latent_size=(text.get_int("moe_latent_size", default=0, lo=0) or 0) if model_type == "nemotron_h"
                   else 0,
                   router_bias=_router_bias(text, model_type), router_fp32=model_type in _ROUTER_FP32)


# Routers held in float32: GateLinear(params_dtype=torch.float32) in vllm glm4_moe.py and minimax_m2.py,
# ReplicatedLinear(params_dtype=torch.float32) in minimax_text_01.py.
_ROUTER_FP32 = frozenset({"glm4_moe", "minimax_m2", *_MINIMAX_LINEAR})


def _router_bias(text: _Cfg, model_type: str) -> bool:
    """Whether the gate carries e_score_correction_bias: DeepSeek-V3-style noaux_tc routing, always in GLM-4.5
    (Glm4MoE) and NemotronHMoE, and in MiniMax-M2 when use_routing_bias."""
    if model_type in ("glm4_moe", "nemotron_h"):
        return True
    if model_type == "minimax_m2":
        return text.get_bool("use_routing_bias", False)
    return text.get("topk_method") == "noaux_tc"


def _mla(text: _Cfg) -> MLAInfo | None:
    if not text.has("kv_lora_rank"):
        return None
    return MLAInfo(
        q_lora_rank=text.get_int("q_lora_rank"),
        kv_lora_rank=text.req_int(("kv_lora_rank",)),
        qk_nope_head_dim=text.req_int(("qk_nope_head_dim",)),
        qk_rope_head_dim=text.req_int(("qk_rope_head_dim",)),
        v_head_dim=text.req_int(("v_head_dim",)),
    )


def _ssm(text: _Cfg, model_type: str, hidden: int, kinds: tuple[str, ...]) -> SSMInfo | None:
    """Recurrent-state geometry; defaults are the transformers config-class defaults."""
    if "linear_attention" in kinds and model_type in _MINIMAX_LINEAR:
        # MiniMaxText01LinearAttention: state (heads/TP, head_dim, head_dim) per request (mamba_utils.py
        # linear_attention_state_shape), in the model dtype (linear_attention_state_dtype)
        heads = text.req_int(_HEAD_KEYS, hi=_MAX_COUNT)
        head_dim = text.get_int("head_dim") or hidden // heads
        return SSMInfo(kind="lightning", num_heads=heads, head_dim=head_dim, conv_kernel=1, expand=1)
    if "linear_attention" in kinds:  # Qwen3-Next Gated DeltaNet
        nk = text.req_int(("linear_num_key_heads",), hi=_MAX_COUNT)
        kd = text.req_int(("linear_key_head_dim",))
        nv = text.req_int(("linear_num_value_heads",), hi=_MAX_COUNT)
        vd = text.req_int(("linear_value_head_dim",))
        return SSMInfo(kind="gdn", conv_kernel=text.get_int("linear_conv_kernel_dim", default=4) or 4,
                       num_heads=nv, head_dim=vd, num_k_heads=nk, k_head_dim=kd, num_v_heads=nv,
                       v_head_dim=vd)
    if "mamba" not in kinds:
        return None
    if model_type == "nemotron_h":  # NemotronHMambaDecoderLayer -> MambaMixer2
        heads = text.req_int(("mamba_num_heads",), hi=_MAX_COUNT)
        head_dim = text.req_int(("mamba_head_dim",))
        groups = text.get_int("n_groups", default=None) or text.get_int("mamba_n_groups", default=8) or 8
        conv = text.get_int("conv_kernel", default=None) or text.get_int("mamba_d_conv", default=4) or 4
        ssm_dtype = text.get("mamba_ssm_cache_dtype", "float32")
        if not isinstance(ssm_dtype, str) or ssm_dtype.lower() not in ("auto", *_DTYPES):
            raise text.fail("mamba_ssm_cache_dtype", "auto, float32, bfloat16 or float16", ssm_dtype)
        return SSMInfo(kind="mamba2", state_size=text.get_int("ssm_state_size", default=128) or 128,
                       conv_kernel=conv, expand=text.get_int("expand", default=2) or 2,
                       intermediate_size=heads * head_dim, num_heads=heads, head_dim=head_dim, n_groups=groups,
                       conv_bias=text.get_bool("use_conv_bias", True),
                       ssm_state_dtype=None if ssm_dtype.lower() == "auto" else _DTYPES[ssm_dtype.lower()])
    if model_type == "jamba":  # JambaConfig: mamba_d_state 16, mamba_d_conv 4, mamba_expand 2
        expand = text.get_int("mamba_expand", default=2) or 2
        return SSMInfo(kind="mamba1", state_size=text.get_int("mamba_d_state", default=16) or 16,
                       conv_kernel=text.get_int("mamba_d_conv", default=4) or 4, expand=expand,
                       intermediate_size=expand * hidden)
    expand = text.get_int("expand", default=2) or 2
    inter = text.get_int("intermediate_size", default=expand * hidden) or expand * hidden
    conv = text.get_int("conv_kernel", default=4) or 4
    if model_type == "mamba2" or text.has("n_groups"):  # Mamba2Config: state_size 128, n_groups 1
        return SSMInfo(kind="mamba2", state_size=text.get_int("state_size", default=128) or 128,
                       conv_kernel=conv, expand=expand, intermediate_size=inter,
                       num_heads=text.req_int(("num_heads",), hi=_MAX_COUNT),
                       head_dim=text.req_int(("head_dim",)),
                       n_groups=text.get_int("n_groups", default=1) or 1)
    return SSMInfo(kind="mamba1", state_size=text.get_int("state_size", default=16) or 16,  # MambaConfig
                   conv_kernel=conv, expand=expand, intermediate_size=inter)


# --------------------------------------------------------------------------- quantization

_BITS_BY_METHOD = {"fp8": 8, "fbgemm_fp8": 8, "mxfp4": 4, "modelopt": 8, "modelopt_fp4": 4}


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    flat: list[str] = []
    for item in value:
        flat.extend(_str_tuple(item) if isinstance(item, list) else [str(item)])
    return tuple(flat)


def _modelopt(quant: _Cfg, raw: dict[str, Any]) -> QuantInfo:
    """ModelOpt quantization (hf_quant_config.json `quantization` or config.json quant_method modelopt)."""
    algo = str(quant.get("quant_algo", "")).upper()
    kv = quant.get("kv_cache_quant_algo")
    fp4 = "FP4" in algo
    return QuantInfo(
        method="modelopt_fp4" if fp4 else "modelopt",
        weight_bits=4 if fp4 else (8 if "FP8" in algo else None),
        group_size=quant.get_int("group_size"), format=algo.lower() or None,
        modules_not_converted=_str_tuple(quant.get("exclude_modules", quant.get("ignore"))),
        kv_cache_quant=str(kv) if kv is not None else None, raw=raw)


def _compressed_tensors(q: _Cfg, raw: dict[str, Any]) -> QuantInfo:
    groups = q.get("config_groups", {})
    weights: dict[str, Any] = {}
    if isinstance(groups, dict):
        for group in groups.values():
            if isinstance(group, dict) and isinstance(group.get("weights"), dict):
                weights = group["weights"]
                break
    w = _Cfg(weights, q.where, f"{q.prefix}config_groups.*.weights.")
    kv = q.get("kv_cache_scheme")
    kv_name = None
    if isinstance(kv, dict):
        kv_name = f"{kv.get('type', '')}{kv.get('num_bits', '')}".strip() or None
    return QuantInfo(method="compressed-tensors", weight_bits=w.get_float("num_bits"),
                     group_size=w.get_int("group_size"), format=q.get("format"),
                     symmetric=w.get_bool("symmetric", True) if weights else None,
                     modules_not_converted=_str_tuple(q.get("ignore")), kv_cache_quant=kv_name, raw=raw)


def _bitsandbytes(q: _Cfg, raw: dict[str, Any]) -> QuantInfo:
    four = q.get_bool("load_in_4bit", False)
    bits = 4 if four else (8 if q.get_bool("load_in_8bit", False) else None)
    return QuantInfo(method="bitsandbytes", weight_bits=bits,
                     format=q.get("bnb_4bit_quant_type") if four else None,
                     modules_not_converted=_str_tuple(q.get("llm_int8_skip_modules")), raw=raw)


def _quant_from_config(q: _Cfg, raw: dict[str, Any], key: str) -> QuantInfo:
    method = q.get("quant_method", "compressed-tensors" if key == "compression_config" else None)
    if not isinstance(method, str):
        raise q.fail("quant_method", "a string", method)
    method = method.lower()
    if method == "modelopt":
        return _modelopt(q, raw)
    if method in ("compressed-tensors", "compressed_tensors"):
        return _compressed_tensors(q, raw)
    if method == "bitsandbytes":
        return _bitsandbytes(q, raw)
    block = q.int_list("weight_block_size", lo=1, hi=_MAX_WIDTH)
    bits = q.get_float("bits", q.get_float("w_bit", q.get_float("weight_bits")))
    zero_point = q.get("zero_point")
    sym = q.get("sym")
    return QuantInfo(
        method=method,
        weight_bits=bits if bits is not None else _BITS_BY_METHOD.get(method),
        group_size=q.get_int("group_size" if q.has("group_size") else "q_group_size", lo=-1),
        block_size=(block[0], block[1]) if block and len(block) == 2 else None,
        format=q.get("fmt", q.get("version", q.get("checkpoint_format"))),
        symmetric=sym if isinstance(sym, bool)
        else (not zero_point if isinstance(zero_point, bool) else None),
        desc_act=q.get("desc_act") if isinstance(q.get("desc_act"), bool) else None,
        modules_not_converted=_str_tuple(q.get("modules_to_not_convert", q.get("ignored_layers"))),
        raw=raw)


def _quant(root: _Cfg, text: _Cfg, hf_quant_config: dict[str, Any] | None) -> QuantInfo | None:
    """config.json's quantization_config / compression_config first, then ModelOpt hf_quant_config.json."""
    for cfg in (root, text):
        for key in ("quantization_config", "compression_config"):
            value = cfg.get(key)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise cfg.fail(key, "an object", value)
            return _quant_from_config(_Cfg(value, cfg.where, f"{cfg.prefix}{key}."), value, key)
    if hf_quant_config is None:
        return None
    where = root.where.rsplit("/", 1)[0] + "/hf_quant_config.json"
    section = hf_quant_config.get("quantization") if isinstance(hf_quant_config, dict) else None
    if not isinstance(section, dict):
        raise ModelConfigError(f"{where}: quantization: expected an object, got {section!r}")
    return _modelopt(_Cfg(section, where, "quantization."), hf_quant_config)


# --------------------------------------------------------------------------- assembly


def _safetensors_total(index: dict[str, Any] | None, where: str) -> int | None:
    if index is None:
        return None
    meta = index.get("metadata") if isinstance(index, dict) else None
    if not isinstance(meta, dict) or meta.get("total_size") is None:
        return None
    idx_where = where.rsplit("/", 1)[0] + "/model.safetensors.index.json"
    return _Cfg(meta, idx_where, "metadata.").get_int("total_size", lo=0, hi=2**62)


def _tied(text: _Cfg, root: _Cfg, model_type: str) -> bool:
    for cfg in (text, root):
        if cfg.has("tie_word_embeddings"):
            return cfg.get_bool("tie_word_embeddings", True)
    return model_type not in _UNTIED_BY_DEFAULT


def _attention_bias(text: _Cfg, model_type: str) -> bool:
    for key in ("attention_bias", "qkv_bias", "bias", "use_bias"):
        if text.has(key) and not (key == "use_bias" and model_type in _PURE_SSM):
            return text.get_bool(key, False)
    return model_type in _QKV_BIAS


def _norms_per_layer(text: _Cfg, model_type: str, pure_ssm: bool) -> int:
    if pure_ssm or model_type == "nemotron_h":
        return 1  # one RMSNorm before each mixer (Nemotron-H: before each layer's single block)
    if model_type.startswith("gemma2") or model_type.startswith("gemma3"):
        return 4  # pre/post attention and pre/post feed-forward
    if model_type == "falcon" and text.get_bool("parallel_attn", True) \
            and not text.get_bool("new_decoder_architecture", False):
        return 1  # one input_layernorm feeds both parallel branches
    return 2


def _dense_intermediate(text: _Cfg, model_type: str, hidden: int, pure_ssm: bool) -> int:
    if pure_ssm:
        return 0  # Mamba blocks have no MLP (intermediate_size is the SSM inner width)
    if model_type in ("llama4", "llama4_text") and text.has("intermediate_size_mlp"):
        return text.get_int("intermediate_size_mlp") or 0
    key = text.first_key(_INTERMEDIATE_KEYS)
    if key is not None:
        return text.get_int(key, lo=0) or 0
    if model_type == "falcon":
        return 4 * hidden  # FalconMLP: dense_h_to_4h / dense_4h_to_h
    return 0


def _attention_shape(text: _Cfg, model_type: str, hidden: int, pure_ssm: bool,
                     mla: MLAInfo | None) -> tuple[int, int, int, int]:
    """(num_attention_heads, num_kv_heads, head_dim, v_head_dim)."""
    if pure_ssm:
        return 0, 0, 0, 0
    heads = text.req_int(_HEAD_KEYS, hi=_MAX_COUNT)
    kv = _num_kv_heads(text, model_type, heads)
    if mla is None and kv > 0 and heads % kv:  # grouped-query attention shares each KV head by a whole group
        raise text.fail("num_key_value_heads", f"a divisor of num_attention_heads {heads}", kv)
    if mla is not None:
        return heads, kv, mla.qk_nope_head_dim + mla.qk_rope_head_dim, mla.v_head_dim
    head_dim = _nemotron_h_head_dim(text) if model_type == "nemotron_h" else _head_dim(text, hidden, heads)
    if head_dim <= 0:
        raise text.fail("head_dim", "a positive head size (hidden_size / num_attention_heads)", head_dim)
    return heads, kv, head_dim, head_dim


MAX_UNCONVERTED_MODULES = 100_000  # entries of a quantization config's list of modules left unconverted
MAX_PATTERN_LAYER_PAIRS = 20_000  # wildcard or "re:" entries x layers: each pair is matched per layer


def _check_unconverted(quant: QuantInfo | None, layers: int, where: str) -> None:
    """Bound the work of the unconverted-modules list: plain module names are looked up once, but every
    wildcard or regex entry is matched against each layer's module names."""
    if quant is None:
        return
    patterns = quant.modules_not_converted
    if len(patterns) > MAX_UNCONVERTED_MODULES:
        raise ModelConfigError(f"{where}: quantization config lists {len(patterns):,} modules not converted; "
                               f"the planner reads at most {MAX_UNCONVERTED_MODULES:,}")
    wild = sum(1 for p in patterns if p.startswith("re:") or any(c in p for c in "*?["))
    if wild * layers > MAX_PATTERN_LAYER_PAIRS:
        raise ModelConfigError(f"{where}: quantization config has {wild:,} wildcard or regex module patterns "
                               f"over {layers:,} layers; the planner matches at most {MAX_PATTERN_LAYER_PAIRS:,} "
                               "pattern-layer pairs")


def _partial_rotary(text: _Cfg, head_dim: int, from_params: float | None) -> float:
    """partial_rotary_factor, or rotary_dim / head_dim where the config gives rotary_dim (MiniMax: vllm
    minimax_text_01.py / minimax_m2.py set partial_rotary_factor = rotary_dim / head_dim)."""
    rotary_dim = text.get_int("rotary_dim")
    if rotary_dim and head_dim and not text.has("partial_rotary_factor") and from_params is None:
        return rotary_dim / head_dim
    return text.get_float("partial_rotary_factor", from_params or 1.0) or 1.0


def parse_config(config: dict[str, Any], *, name: str, source: str = "",
                 hf_quant_config: dict[str, Any] | None = None,
                 safetensors_index: dict[str, Any] | None = None) -> ModelArch:
    """Normalise one Hugging Face config.json dict into a ModelArch.

    Args:
        config: the parsed config.json.
        name: the id the user gave (hub id, catalog id or directory).
        source: "local:/path", "hub:org/name" or "catalog:org/name"; named in error messages.
        hf_quant_config: parsed ModelOpt hf_quant_config.json, when the model has one.
        safetensors_index: parsed model.safetensors.index.json, when the model has one.

    Raises:
        ModelConfigError: one line naming the file, the field and the offending value.
    """
    where = config_where(name, source)
    if not isinstance(config, dict):
        raise ModelConfigError(f"{where}: expected a JSON object, got {type(config).__name__}")
    root = _Cfg(config, where)
    text, multimodal = _text_config(config, where)
    model_type = _model_type(text, config)
    _apply_defaults(text, model_type)
    pure_ssm = _is_pure_ssm(text, model_type)
    hidden = text.req_int(_HIDDEN_KEYS)
    layers = _num_layers(text, model_type)
    mla = _mla(text)
    heads, kv_heads, head_dim, v_head_dim = _attention_shape(text, model_type, hidden, pure_ssm, mla)
    window = _sliding_window(text, model_type)
    kinds = _layer_types(text, model_type, layers, pure_ssm, window)
    if "sliding_attention" in kinds and window is None:
        raise text.fail("sliding_window", "a window size for the sliding-attention layers", None)
    rope, theta_from_params, partial_from_params = _rope(text, root)
    length_keys = _length_keys(text)
    quant = _quant(root, text, hf_quant_config)
    _check_unconverted(quant, layers, where)
    return ModelArch(
        name=name, model_type=model_type, architectures=_architectures(root),
        hidden_size=hidden, num_layers=layers, num_attention_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, v_head_dim=v_head_dim,
        intermediate_size=_dense_intermediate(text, model_type, hidden, pure_ssm),
        vocab_size=text.req_int(("vocab_size", "padded_vocab_size"), hi=_MAX_VOCAB),
        tie_word_embeddings=_tied(text, root, model_type),
        max_position_embeddings=next(iter(length_keys.values()), None),
        config_dtype=_config_dtype(root, text), layer_types=kinds,
        sliding_window=window if "sliding_attention" in kinds else None,
        attention_chunk_size=text.get_int("attention_chunk_size", hi=_MAX_LENGTH)
        if "chunked_attention" in kinds else None,
        rope_scaling=rope,
        rope_theta=text.get_float("rope_theta", theta_from_params),
        partial_rotary_factor=_partial_rotary(text, head_dim, partial_from_params),
        gated_mlp=model_type not in _NON_GATED_MLP,
        attention_bias=False if pure_ssm else _attention_bias(text, model_type),
        norm_has_bias=model_type in _LAYERNORM_BIAS,
        norms_per_layer=_norms_per_layer(text, model_type, pure_ssm),
        qk_norm=model_type in _QK_NORM or (model_type in _QK_NORM_OPTIONAL and text.get_bool("use_qk_norm", False)),
        mixer_xor_mlp=model_type == "nemotron_h", rope=model_type != "nemotron_h",
        max_length_keys=length_keys,
        moe=_moe(text, model_type, layers), mla=mla, ssm=_ssm(text, model_type, hidden, kinds),
        quant=quant, is_multimodal=multimodal,
        safetensors_total_bytes=_safetensors_total(safetensors_index, where),
        source=source, raw=config,
    )


# ---------------------------------------------------------------------------------------------
# max_model_len: vllm/config/model.py _get_and_verify_max_len (spec section 4.1)
# ---------------------------------------------------------------------------------------------

# vLLM's fallback when the config has no length key ("assuming the model's maximum length is 2048").
_VLLM_DEFAULT_MAX_LEN = 2048
# Rope types whose factor is NOT multiplied into the derived length.
_ROPE_NO_SCALE = {
    "0.33": frozenset({"su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling"}),
    "0.29": frozenset({"su", "longrope", "llama3"}),
}


def _derived_from_keys(arch: ModelArch) -> int:
    keys = arch.max_length_keys
    if "model_max_length" in keys:  # wins outright (Cohere)
        return keys["model_max_length"]
    return min(keys.values()) if keys else _VLLM_DEFAULT_MAX_LEN


def derived_max_model_len(arch: ModelArch, *, rope_rule: str = "0.33") -> int:
    """The largest max_model_len vLLM accepts without VLLM_ALLOW_LONG_MAX_MODEL_LEN.

    Args:
        arch: the parsed model.
        rope_rule: "0.33" (vLLM 0.30+: yarn factors are not applied) or "0.29" (vLLM <= 0.29:
            yarn gives original_max_position_embeddings x factor).
    """
    if rope_rule not in _ROPE_NO_SCALE:
        raise ValueError(f"rope_rule: expected one of {', '.join(_ROPE_NO_SCALE)}, got {rope_rule!r}")
    derived = _derived_from_keys(arch)
    rope = arch.rope_scaling
    if rope is None or "gemma3" in arch.model_type:
        return derived
    rope_type = rope.get("rope_type", "default")
    factor = rope.get("factor")
    if rope_type in _ROPE_NO_SCALE[rope_rule] or not isinstance(factor, (int, float)):
        return derived
    if rope_rule == "0.29" and rope_type == "yarn":
        derived = int(rope.get("original_max_position_embeddings", derived))
    return int(derived * factor)


def default_max_model_len(arch: ModelArch, *, rope_rule: str = "0.33") -> int:
    """What vLLM uses when --max-model-len is not given: the derived length, except LongRoPE
    models, which default to original_max_position_embeddings (shorter sequences stay fast)."""
    derived = derived_max_model_len(arch, rope_rule=rope_rule)
    rope = arch.rope_scaling or {}
    if rope.get("rope_type") == "longrope" and isinstance(rope.get("original_max_position_embeddings"), int):
        return int(rope["original_max_position_embeddings"])
    return derived
