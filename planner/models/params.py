"""Parameter counting and weight bytes per rank, the way vLLM shards and stores them.

Pure: no I/O, no policy numbers. Bytes per *quantized* parameter always come in as arguments
(from the rule pack); the only sizes written here are physical element sizes.

Every decoder layer is described as a list of `Tensor`s (group, element count, sharding), so the
published-style count (`total_params`), the per-GPU bytes (`rank_weights`) and the FP8 block-scale
count (`block_scale_params`) all derive from one description.

Conventions (source in brackets; "vLLM" means vllm/model_executor/...):

* Vocabulary: embedding and lm_head rows padded to a multiple of 64 and split across TP
  [layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE, pad_vocab_size]. A tied lm_head
  shares the embedding, except on the last PP stage of a PP>1 run, which holds its own copy.
* Column-parallel (q/k/v, gate/up, MLA q_b/kv_b, shared experts) and row-parallel (o, down)
  weights are divided by TP; k/v heads by min(TP, kv_heads) (replicated beyond) [layers/linear.py,
  QKVParallelLinear]. Norms, routers, MLA fused q_a/kv_a (`MergedReplicatedLinear` /
  `ReplicatedLinear`) are replicated on every TP rank.
* Routed experts are split over the expert "TP" group TP x DP [fused_moe/config.py
  FusedMoEParallelConfig.make]: without EP each GPU holds every expert at I/(TP*DP); with EP it
  holds ceil(E/(TP*DP)) whole experts (rank 0 gets the remainder first: determine_expert_map).
  Attention, dense MLPs, shared experts and embeddings are replicated across DP ranks.
* MLA: after loading, `MLAAttention.process_weights_after_loading` builds W_UK_T/W_UV from
  `get_and_maybe_dequant_weights(kv_b_proj)`. Unquantized kv_b_proj -> the weight itself, so
  W_UK_T/W_UV are views (no memory); quantized kv_b_proj -> a dequantized activation-dtype copy of
  kv_lora x heads/TP x (nope + v) per layer that stays alive next to kv_b_proj.
* Vision towers (config `vision_config`) are counted (SigLIP/Gemma-3, Pixtral/Mistral-3,
  Llama-4 vision; other towers as a generic pre-LN ViT) and, like vLLM's default
  `mm_encoder_tp_mode="weights"`, TP-sharded. They are built on every PP stage (vLLM's
  `*ForConditionalGeneration` constructs the tower unconditionally; only the language model is
  PP-split) -- an assumption that errs on the side of more memory.

Quantized storage (`is_quantized`): a module group takes `linear_bytes_per_param` only when the
checkpoint's format quantizes it; everything else stays in the activation dtype.
* Never quantized: embeddings, lm_head (ParallelLMHead is not a LinearBase, so fp8 /
  compressed-tensors / modelopt skip it; GPTQ/AWQ only with `lm_head: true`), norms, biases,
  MoE router gates (built with quant_config=None in mixtral/qwen*_moe/deepseek_v2/llama4, a plain
  Linear in gpt_oss), attention sinks, SSM conv/state parameters.
* `mxfp4` (gpt-oss): ONLY the routed experts [quantization/mxfp4.py Mxfp4Config.get_quant_method:
  LinearBase -> UnquantizedLinearMethod, FusedMoE -> Mxfp4MoEMethod].
* Every other format (fp8, fbgemm_fp8, compressed-tensors, modelopt, gptq, awq, ...): every linear
  group unless `QuantInfo.modules_not_converted` (fp8 `modules_to_not_convert`, compressed-tensors
  `ignore`, modelopt `exclude_modules`, bnb `llm_int8_skip_modules`) names it. Matching: a
  "re:" pattern is `re.match`ed (compressed-tensors semantics); any other pattern matches a module
  name equal to it, below it ("model.layers.0" covers "model.layers.0.mlp.down_proj"), or ending
  with it at a module boundary; "*" is a wildcard. A group counts as not converted when any of
  its representative module names (HF checkpoint spelling, see `_GROUP_MODULES`) matches.
* No QuantInfo (unquantized checkpoint): every linear group takes `linear_bytes_per_param`, which
  the caller sets to the activation size, or to the online format's size for `--quantization`.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.models.arch import ModelArch, QuantInfo
from planner.units import cdiv, round_up

VOCAB_PADDING = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE
FP8_BLOCK = 128  # DeepSeek-style FP8 block quantization tile (weight_block_size [128, 128])
MXFP4_BLOCK = 32  # OCP MX block: one e8m0 scale per 32 FP4 values

# Module groups: how a checkpoint format decides what it quantizes.
ATTENTION = "attention"
MLP = "mlp"  # dense MLP
EXPERTS = "experts"  # routed experts (FusedMoE)
SHARED_EXPERTS = "shared_experts"
SSM = "ssm"  # Mamba / GDN projections
VISION = "vision"  # vision tower and multimodal projector
ROUTER = "router"
EMBEDDING = "embedding"
LM_HEAD = "lm_head"
NORM = "norm"  # norms, biases, sinks, SSM conv/state vectors: always the activation dtype (or float32: Tensor.fp32)
EXPERT_BIAS = "expert_bias"  # gpt-oss routed-expert biases: never quantized; float32 under vLLM's MXFP4 MoE
MTP_PROJ = "mtp_proj"  # MTP eh_proj / fc (2H -> H): a plain nn.Linear or a quant_config=None layer, never quantized
LINEAR_GROUPS = (ATTENTION, MLP, EXPERTS, SHARED_EXPERTS, SSM, VISION)

# Sharding kinds.
TP = "tp"  # column/row parallel: divided by TP
KV = "kv"  # k/v projections: divided by min(TP, kv_heads)
REPLICATED = "rep"
EXPERT = "expert"  # divided over the TP x DP expert group (or whole experts with EP)

# Representative module names (HF checkpoint spelling) tested against modules_not_converted.
_GROUP_MODULES = {
    ATTENTION: ("model.layers.{i}.self_attn.q_proj", "model.layers.{i}.self_attn.o_proj",
                "model.layers.{i}.self_attention.query_key_value", "model.layers.{i}.self_attn.kv_b_proj"),
    MLP: ("model.layers.{i}.mlp.gate_proj", "model.layers.{i}.mlp.down_proj",
          "model.layers.{i}.mlp.dense_h_to_4h", "model.layers.{i}.feed_forward.gate_proj"),
    EXPERTS: ("model.layers.{i}.mlp.experts.0.gate_proj", "model.layers.{i}.mlp.experts.0.down_proj",
              "model.layers.{i}.mlp.experts.gate_up_proj", "model.layers.{i}.block_sparse_moe.experts.0.w1",
              "model.layers.{i}.feed_forward.experts.gate_up_proj"),
    SHARED_EXPERTS: ("model.layers.{i}.mlp.shared_expert.gate_proj", "model.layers.{i}.mlp.shared_experts.gate_proj",
                     "model.layers.{i}.feed_forward.shared_expert.gate_proj"),
    SSM: ("model.layers.{i}.mixer.in_proj", "model.layers.{i}.linear_attn.in_proj_qkvz",
          "model.layers.{i}.mamba.in_proj", "backbone.layers.{i}.mixer.in_proj"),
    VISION: ("vision_tower.encoder.layers.0.self_attn.q_proj", "vision_tower.transformer.layers.0.attention.q_proj",
             "vision_model.model.layers.0.self_attn.q_proj", "multi_modal_projector.linear_1"),
    LM_HEAD: ("lm_head",),
}
_LM_HEAD_FLAG_METHODS = frozenset({"gptq", "gptq_marlin", "awq", "awq_marlin", "auto-round"})


# ------------------------------------------------------------------------------ quant predicate


def _pattern_matches(pattern: str, module: str) -> bool:
    if pattern.startswith("re:"):
        try:
            return re.match(pattern[3:], module) is not None
        except re.error:
            return False
    return any(fnmatch.fnmatchcase(module, p) for p in (pattern, f"{pattern}.*", f"*.{pattern}", f"*.{pattern}.*"))


def module_skipped(quant: QuantInfo, module: str) -> bool:
    """Whether `module` (HF checkpoint name) is listed in the format's not-converted list."""
    return any(_pattern_matches(p, module) for p in quant.modules_not_converted)


def is_quantized(quant: QuantInfo | None, group: str, layer: int = 0) -> bool:
    """Whether module group `group` of decoder layer `layer` is stored in the checkpoint's quantized format.

    With no QuantInfo every linear group counts as "quantized" (its bytes are then whatever the caller
    passes as `linear_bytes_per_param`: the activation size, or an online format's size). Memoized: a plan
    asks this tens of thousands of times (every layer of every candidate).
    """
    lm_head_flag = quant is not None and quant.raw.get("lm_head") is True  # `raw` is not part of QuantInfo's hash
    return _is_quantized(quant, lm_head_flag, group, layer)


@functools.lru_cache(maxsize=1 << 16)
def _is_quantized(quant: QuantInfo | None, lm_head_flag: bool, group: str, layer: int) -> bool:
    if group in (NORM, ROUTER, EMBEDDING, EXPERT_BIAS, MTP_PROJ):
        return False
    if quant is None:
        return group in LINEAR_GROUPS
    method = quant.method.lower()
    if method == "mxfp4":
        return group == EXPERTS
    if group == LM_HEAD and (method not in _LM_HEAD_FLAG_METHODS or not lm_head_flag):
        return False
    return not _skip_matcher(quant.modules_not_converted).skipped(group, layer)


def _literal(pattern: str) -> tuple[str, ...] | None:
    """A pattern without wildcards or "re:", as its dot-separated components (None otherwise)."""
    if pattern.startswith("re:") or any(c in pattern for c in "*?["):
        return None
    parts = tuple(pattern.split("."))
    return parts if all(parts) else None


def _layer_number(part: str) -> int | None:
    """The layer a name component spells as `str(i)` does, or None."""
    return int(part) if part.isascii() and part.isdigit() and str(int(part)) == part else None


class _SkipMatcher:
    """modules_not_converted, compiled once per list: which module groups of which layers it names.

    A literal pattern matches a module name when its components are a run of the name's components
    (equal, below it, ending it, or inside it: `_pattern_matches`). So each literal pattern names a
    group of every layer, of one layer (its component at the `{i}` position is that layer's number), or
    none: found by lookups, without touching each layer. Wildcard and "re:" patterns are matched per
    name (and per layer: parse_config bounds those pairs, arch.MAX_PATTERN_LAYER_PAIRS).
    """

    def __init__(self, patterns: tuple[str, ...]) -> None:
        literal: set[tuple[str, ...]] = set()
        numbered: dict[tuple[tuple[str, ...], int], set[int]] = {}
        self.others = tuple(p for p in patterns if _literal(p) is None)
        for p in patterns:
            parts = _literal(p)
            if parts is None:
                continue
            literal.add(parts)
            for k, part in enumerate(parts):
                number = _layer_number(part)
                if number is not None:
                    numbered.setdefault(((*parts[:k], "{i}", *parts[k + 1:]), k), set()).add(number)
        self.every: dict[str, bool] = {}  # group -> one of its names is matched in every layer
        self.layers: dict[str, frozenset[int]] = {}  # group -> layers one of its names is matched in
        for group, names in _GROUP_MODULES.items():
            every, layers = False, set()
            for name in names:
                comps = tuple(name.split("."))
                for a in range(len(comps)):
                    for b in range(a + 1, len(comps) + 1):
                        run = comps[a:b]
                        if "{i}" not in run:
                            every = every or run in literal
                        else:
                            layers |= numbered.get((run, run.index("{i}")), set())
            self.every[group] = every
            self.layers[group] = frozenset(layers)

    def skipped(self, group: str, layer: int) -> bool:
        if self.every.get(group) or layer in self.layers.get(group, ()):
            return True
        if not self.others:
            return False
        names = [n.format(i=layer) for n in _GROUP_MODULES.get(group, ())]
        return any(_pattern_matches(p, n) for p in self.others for n in names)


@functools.lru_cache(maxsize=64)
def _skip_matcher(patterns: tuple[str, ...]) -> _SkipMatcher:
    return _SkipMatcher(patterns)


# ------------------------------------------------------------------------------ layer description


@dataclass(frozen=True)
class Tensor:
    """One weight (or a set of identical ones) of a layer: `rows x cols` elements, `count` times."""

    group: str
    shard: str
    rows: int
    cols: int = 1
    count: int = 1  # e.g. number of routed experts
    fp32: bool = False  # held in float32 whatever the model dtype (routers, Mamba A, MXFP4 expert biases)

    @property
    def numel(self) -> int:
        return self.rows * self.cols * self.count


def _text_raw(arch: ModelArch) -> dict[str, Any]:
    for key in ("text_config", "llm_config", "language_config"):
        nested = arch.raw.get(key)
        if isinstance(nested, dict):
            return nested
    return arch.raw


def _attention(arch: ModelArch) -> list[Tensor]:
    h, nh = arch.hidden_size, arch.num_attention_heads
    if arch.mla is not None:
        m = arch.mla
        q_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        out = []
        if m.q_lora_rank:  # fused_qkv_a_proj (q_a + kv_a, replicated), q_a_layernorm, q_b (column)
            out += [Tensor(ATTENTION, REPLICATED, m.q_lora_rank, h), Tensor(NORM, REPLICATED, m.q_lora_rank),
                    Tensor(ATTENTION, TP, nh * q_head, m.q_lora_rank)]
        else:
            out.append(Tensor(ATTENTION, TP, nh * q_head, h))
        out += [Tensor(ATTENTION, REPLICATED, m.kv_lora_rank + m.qk_rope_head_dim, h),  # kv_a_proj_with_mqa
                Tensor(NORM, REPLICATED, m.kv_lora_rank),  # kv_a_layernorm
                Tensor(ATTENTION, TP, nh * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank),  # kv_b_proj
                Tensor(ATTENTION, TP, h, nh * m.v_head_dim)]  # o_proj
        return out + _dsa_indexer(arch)
    nkv, hd, vhd = arch.num_kv_heads, arch.head_dim, arch.v_head_dim
    q_rows = nh * hd * (2 if arch.model_type == "qwen3_next" else 1)  # Qwen3-Next: q_proj also emits the output gate
    out = [Tensor(ATTENTION, TP, q_rows, h), Tensor(ATTENTION, KV, nkv * (hd + vhd), h),
           Tensor(ATTENTION, TP, h, nh * vhd)]
    if arch.attention_bias:
        out += [Tensor(NORM, TP, q_rows), Tensor(NORM, KV, nkv * (hd + vhd))]
        if not arch.model_type.startswith("qwen2") and arch.model_type not in _QKV_BIAS_ONLY:
            out.append(Tensor(NORM, REPLICATED, h))  # o_proj bias (row-parallel: full size on every rank)
    if arch.qk_norm and arch.model_type == "minimax_m2":
        # MiniMaxText01RMSNormTP over all q heads and all k heads (qk_norm_type "per_layer"), split like q and k
        out += [Tensor(NORM, TP, nh * hd), Tensor(NORM, KV, nkv * hd)]
    elif arch.qk_norm:
        out.append(Tensor(NORM, REPLICATED, 2 * hd))
    if arch.model_type == "gpt_oss":
        out.append(Tensor(NORM, TP, nh))  # attention sinks
    return out


# Attention whose only biases are q/k/v (o_proj bias=False): Glm4MoeAttention (vllm glm4_moe.py).
_QKV_BIAS_ONLY = frozenset({"glm4_moe"})


def _dsa_indexer(arch: ModelArch) -> list[Tensor]:
    """DeepSeek-V3.2 / GLM-5 sparse-attention indexer of each MLA layer (configs with index_n_heads):
    wq_b (q_lora -> heads x head_dim, ReplicatedLinear), wk_weights_proj (hidden -> head_dim + heads, replicated,
    never quantized) and a float32 LayerNorm k_norm (vllm deepseek_v2.py Indexer)."""
    raw = _text_raw(arch)
    heads, dim = raw.get("index_n_heads"), raw.get("index_head_dim")
    if not isinstance(heads, int) or not isinstance(dim, int) or arch.mla is None or not arch.mla.q_lora_rank:
        return []
    return [Tensor(ATTENTION, REPLICATED, heads * dim, arch.mla.q_lora_rank),
            Tensor(NORM, REPLICATED, dim + heads, arch.hidden_size),
            Tensor(NORM, REPLICATED, 2 * dim, fp32=True)]


def _is_moe_layer(arch: ModelArch, layer: int) -> bool:
    moe = arch.moe
    return moe is not None and (not moe.moe_layers or layer in _moe_layer_set(arch))


_MOE_SETS: dict[int, tuple[ModelArch, frozenset[int]]] = {}


def _moe_layer_set(arch: ModelArch) -> frozenset[int]:
    """`moe.moe_layers` as a set (a config may list 100,000 layers: membership in the tuple is linear)."""
    hit = _MOE_SETS.get(id(arch))
    if hit is not None and hit[0] is arch:
        return hit[1]
    if len(_MOE_SETS) > 1024:
        _MOE_SETS.clear()
    value = frozenset(arch.moe.moe_layers) if arch.moe is not None else frozenset()
    _MOE_SETS[id(arch)] = (arch, value)
    return value


def _mlp(arch: ModelArch, layer: int) -> list[Tensor]:
    h = arch.hidden_size
    mats = 3 if arch.gated_mlp else 2
    moe = arch.moe
    if moe is not None and _is_moe_layer(arch, layer):
        e, inter = moe.num_experts, moe.moe_intermediate_size
        width = moe.latent_size or h  # Nemotron-3 latent MoE: experts map latent -> latent
        out = [Tensor(EXPERTS, EXPERT, mats * inter, width, count=e),
               Tensor(ROUTER, REPLICATED, e, h, fp32=moe.router_fp32)]
        if moe.latent_size:  # fc1_latent_proj (hidden -> latent) and fc2_latent_proj (latent -> hidden), replicated
            out.append(Tensor(MLP, REPLICATED, 2 * moe.latent_size, h))
        if moe.shared_expert_intermediate_size:
            out.append(Tensor(SHARED_EXPERTS, TP, mats * moe.shared_expert_intermediate_size, h))
            if arch.model_type in ("qwen2_moe", "qwen3_next"):
                out.append(Tensor(ROUTER, REPLICATED, 1, h))  # shared_expert_gate
        if arch.model_type == "gpt_oss":
            # expert gate_up biases (split like the experts), down biases (E x hidden on every rank: FusedMoE's
            # w2_bias is not sharded) and the router bias
            out += [Tensor(EXPERT_BIAS, EXPERT, (mats - 1) * inter, count=e),
                    Tensor(EXPERT_BIAS, REPLICATED, h, count=e), Tensor(NORM, REPLICATED, e)]
        if moe.router_bias:  # gate.e_score_correction_bias, a float32 Parameter
            out.append(Tensor(NORM, REPLICATED, e, fp32=True))
        return out
    if arch.intermediate_size == 0:
        return []
    return [Tensor(MLP, TP, mats * arch.intermediate_size, h)]


def _ssm(arch: ModelArch) -> list[Tensor]:
    """One Mamba1 / Mamba2 / Gated-DeltaNet mixer (vLLM mamba_mixer*.py, qwen3_next.py)."""
    s = arch.ssm
    if s is None:
        return []
    h = arch.hidden_size
    if s.kind == "lightning":  # vllm layers/mamba/linear_attn.py MiniMaxText01LinearAttention
        inner = s.num_heads * s.head_dim
        return [Tensor(SSM, TP, 3 * inner, h),  # qkv_proj
                Tensor(SSM, TP, inner, h),  # output_gate
                Tensor(NORM, TP, inner),  # MiniMaxText01RMSNormTP
                Tensor(SSM, TP, h, inner)]  # out_proj
    if s.kind == "gdn":
        key, val, nv = s.num_k_heads * s.k_head_dim, s.num_v_heads * s.v_head_dim, s.num_v_heads
        return [Tensor(SSM, TP, 2 * key + 2 * val, h),  # in_proj_qkvz
                Tensor(SSM, TP, 2 * nv, h),  # in_proj_ba
                Tensor(NORM, TP, 2 * key + val, s.conv_kernel),  # conv1d (no bias)
                Tensor(NORM, TP, 2 * nv),  # dt_bias, A_log
                Tensor(NORM, REPLICATED, s.v_head_dim),  # gated RMSNorm over a head
                Tensor(SSM, TP, h, val)]  # out_proj
    d_inner = s.intermediate_size or s.expand * h
    if s.kind == "mamba2":
        conv_dim = d_inner + 2 * s.n_groups * s.state_size
        # vllm layers/mamba/mamba_mixer2.py MambaMixer2: in_proj [z, x, B, C, dt], conv1d over [x, B, C] (+ bias
        # with use_conv_bias), A (float32), D, dt_bias, Mixer2RMSNormGated over d_inner, out_proj
        return [Tensor(SSM, TP, 2 * d_inner + 2 * s.n_groups * s.state_size + s.num_heads, h),  # in_proj
                Tensor(NORM, TP, conv_dim, s.conv_kernel + (1 if s.conv_bias else 0)),  # conv1d weight (+ bias)
                Tensor(NORM, TP, s.num_heads, fp32=True),  # A = -exp(A_log)
                Tensor(NORM, TP, 2 * s.num_heads),  # dt_bias, D
                Tensor(NORM, TP, d_inner),  # gated RMSNorm
                Tensor(SSM, TP, h, d_inner)]  # out_proj
    raw = _text_raw(arch)
    dt_rank = raw.get("mamba_dt_rank") or raw.get("time_step_rank")
    dt_rank = dt_rank if isinstance(dt_rank, int) and dt_rank > 0 else cdiv(h, 16)
    out = [Tensor(SSM, TP, 2 * d_inner, h),  # in_proj
           Tensor(NORM, TP, d_inner, s.conv_kernel + 1),  # conv1d weight + bias
           Tensor(SSM, TP, dt_rank + 2 * s.state_size, d_inner),  # x_proj (row-parallel)
           Tensor(SSM, TP, d_inner, dt_rank),  # dt_proj
           Tensor(NORM, TP, d_inner, s.state_size + 2),  # A_log, D, dt_proj bias
           Tensor(SSM, TP, h, d_inner)]  # out_proj
    if arch.model_type == "jamba":  # dt/b/c RMSNorms inside the mixer
        out.append(Tensor(NORM, REPLICATED, dt_rank + 2 * s.state_size))
    return out


def layer_tensors(arch: ModelArch, layer: int) -> list[Tensor]:
    """Every weight of decoder layer `layer`, with its module group and sharding."""
    kind = arch.layer_types[layer] if layer < len(arch.layer_types) else "full_attention"
    if kind == "mlp":  # no token mixer (Nemotron-H '-' / 'E' layers)
        mixer: list[Tensor] = []
    elif kind in ("mamba", "linear_attention"):
        mixer = _ssm(arch)
    else:
        mixer = _attention(arch)
    # Nemotron-H: a mixer layer has no MLP and an MLP layer no mixer (one block per layer)
    mlp = [] if arch.mixer_xor_mlp and kind != "mlp" else _mlp(arch, layer)
    norms = arch.norms_per_layer * arch.hidden_size * (2 if arch.norm_has_bias else 1)
    return [*mixer, *mlp, Tensor(NORM, REPLICATED, norms)]


# ------------------------------------------------------------------------------ layer classes
#
# A config may declare up to 100,000 layers, and a plan asks for the weights of every (layout, PP stage):
# per-layer loops there cost layers x layouts. Layers that are alike -- the same kind (attention, mamba, ...),
# the same MLP (MoE or dense) and, when the checkpoint leaves some modules unconverted, the same quantized
# groups -- hold the same tensors, so each class of alike layers is described once and counted.

_PER_LAYER_GROUPS = (ATTENTION, MLP, EXPERTS, SHARED_EXPERTS, SSM)  # the groups whose module names hold {i}
_CLASSES: dict[int, tuple[ModelArch, list[int], list[int], list[list[int]]]] = {}
_RANGES: dict[tuple[int, int, int], tuple[ModelArch, tuple[tuple[int, int], ...]]] = {}
_BISECT_CLASSES = 64  # up to this many classes, a range is counted by bisection; beyond, by one pass over it


def _layer_kind(arch: ModelArch, layer: int) -> str:
    return arch.layer_types[layer] if layer < len(arch.layer_types) else "full_attention"


def _per_layer_quant(quant: QuantInfo | None) -> bool:
    """Whether is_quantized can differ between layers: only through modules_not_converted patterns."""
    return quant is not None and bool(quant.modules_not_converted) and quant.method.lower() != "mxfp4"


def _layer_class_table(arch: ModelArch) -> tuple[list[int], list[int], list[list[int]]]:
    """(class of each layer, representative of each class, the layers of each class in order), memoized."""
    hit = _CLASSES.get(id(arch))
    if hit is not None and hit[0] is arch:
        return hit[1], hit[2], hit[3]
    if len(_CLASSES) > 256:
        _CLASSES.clear()
    per_quant = _per_layer_quant(arch.quant)
    moe = arch.moe
    moe_all = moe is not None and not moe.moe_layers
    moe_set = _moe_layer_set(arch)
    skip = _skip_matcher(arch.quant.modules_not_converted) if per_quant and arch.quant is not None else None
    index: dict[tuple[Any, ...], int] = {}
    ids: list[int] = []
    members: list[list[int]] = []
    for i in range(arch.num_layers):
        key = (_layer_kind(arch, i), moe_all or i in moe_set,
               tuple(skip.skipped(g, i) for g in _PER_LAYER_GROUPS) if skip is not None else ())
        cls = index.get(key)
        if cls is None:
            cls = index[key] = len(members)
            members.append([])
        members[cls].append(i)
        ids.append(cls)
    reps = [m[0] for m in members]
    _CLASSES[id(arch)] = (arch, ids, reps, members)
    return ids, reps, members


def layer_classes(arch: ModelArch, layers: range | None = None) -> tuple[tuple[int, int], ...]:
    """(representative layer, count) for each class of alike layers in `layers` (default: all of them):
    every layer of a class has the tensors of its representative, stored the same way."""
    import bisect
    from collections import Counter

    layers = range(arch.num_layers) if layers is None else layers
    if layers.step != 1 or layers.start < 0 or layers.stop > arch.num_layers:
        raise ValueError(f"layer_classes: {layers} is not a range of the model's {arch.num_layers} layers")
    key = (id(arch), layers.start, layers.stop)
    hit = _RANGES.get(key)
    if hit is not None and hit[0] is arch:
        return hit[1]
    ids, reps, members = _layer_class_table(arch)
    if len(members) <= _BISECT_CLASSES:
        counts = {c: bisect.bisect_left(m, layers.stop) - bisect.bisect_left(m, layers.start)
                  for c, m in enumerate(members)}
    else:
        counts = dict(Counter(ids[layers.start:layers.stop]))
    out = tuple((reps[c], n) for c, n in sorted(counts.items()) if n)
    if len(_RANGES) > 4096:
        _RANGES.clear()
    _RANGES[key] = (arch, out)
    return out


def layer_kind_counts(arch: ModelArch, layers: range) -> dict[str, int]:
    """How many layers of each kind (`ModelArch.layer_types` vocabulary) `layers` holds, in first-seen order."""
    out: dict[str, int] = {}
    for rep, n in layer_classes(arch, layers):
        kind = _layer_kind(arch, rep)
        out[kind] = out.get(kind, 0) + n
    return out


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one decoder layer by sharding kind (all groups together)."""

    sharded_linear: int  # divided by TP
    kv_linear: int  # divided by min(TP, kv_heads)
    replicated_linear: int  # replicated on every TP rank
    expert: int  # divided over the TP x DP expert group
    small: int  # norms, biases, routers: activation dtype


def layer_params(arch: ModelArch, layer: int) -> LayerParams:
    """Parameter split of decoder layer `layer`."""
    by: dict[str, int] = {TP: 0, KV: 0, REPLICATED: 0, EXPERT: 0}
    small = 0
    for t in layer_tensors(arch, layer):
        if t.group in (NORM, ROUTER, EXPERT_BIAS):
            small += t.numel
        else:
            by[t.shard] += t.numel
    return LayerParams(sharded_linear=by[TP], kv_linear=by[KV], replicated_linear=by[REPLICATED],
                       expert=by[EXPERT], small=small)


# ------------------------------------------------------------------------------ vision towers


def _vit_layers(n: int, h: int, inter: int, *, bias: bool, gated: bool, norm_bias: bool) -> int:
    attn = 4 * h * h + (4 * h if bias else 0)
    mlp = (3 if gated else 2) * h * inter + ((inter + h) if bias and not gated else 0)
    return n * (attn + mlp + 2 * h * (2 if norm_bias else 1))


def _qwen25_vl_tower(vc: dict, text_h: int) -> int:
    """Qwen2.5-VL: Conv3d patch embed (no bias), `depth` blocks of RMSNorm + qkv/proj with bias + a gated SiLU MLP
    with bias, and a PatchMerger (RMSNorm, Linear(4h, 4h), Linear(4h, out_hidden_size), both with bias)."""
    h, inter, n = int(vc["hidden_size"]), int(vc["intermediate_size"]), int(vc.get("depth") or 0)
    chans, patch = int(vc.get("in_chans") or vc.get("in_channels") or 3), int(vc.get("patch_size") or 14)
    temporal = int(vc.get("temporal_patch_size") or 2)
    merge = int(vc.get("spatial_merge_size") or 2) ** 2 * h
    out = int(vc.get("out_hidden_size") or text_h)
    block = 4 * h * h + 4 * h + 3 * h * inter + 2 * inter + h + 2 * h
    return chans * temporal * patch * patch * h + n * block + h + merge * merge + merge + merge * out + out


def _qwen3_vl_tower(vc: dict) -> int:
    """Qwen3-VL / Qwen3.5: Conv3d patch embed with bias, learned position embedding, `depth` blocks of LayerNorm +
    qkv/proj with bias + a GELU MLP with bias, a PatchMerger (LayerNorm(h), Linear(4h, 4h), Linear(4h, out)) and
    one more merger per `deepstack_visual_indexes` entry (its LayerNorm over 4h)."""
    h, inter, n = int(vc["hidden_size"]), int(vc["intermediate_size"]), int(vc.get("depth") or 0)
    chans, patch = int(vc.get("in_channels") or vc.get("in_chans") or 3), int(vc.get("patch_size") or 16)
    temporal = int(vc.get("temporal_patch_size") or 2)
    merge = int(vc.get("spatial_merge_size") or 2) ** 2 * h
    out = int(vc["out_hidden_size"])
    block = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h
    linears = merge * merge + merge + merge * out + out
    tower = chans * temporal * patch * patch * h + h + int(vc.get("num_position_embeddings") or 0) * h + n * block
    deepstack = len(vc.get("deepstack_visual_indexes") or [])
    return tower + (2 * h + linears) + deepstack * (2 * merge + linears)


def vision_params(arch: ModelArch) -> int:
    """Vision tower + multimodal projector parameters, from the config's `vision_config` (0 if none)."""
    vc = arch.raw.get("vision_config")
    if not isinstance(vc, dict) or not vc.get("hidden_size"):
        return 0
    h = int(vc["hidden_size"])
    inter = int(vc.get("intermediate_size") or 4 * h)
    n = int(vc.get("num_hidden_layers") or 0)
    patch = int(vc.get("patch_size") or 14)
    chans = int(vc.get("num_channels") or 3)
    image = int(vc.get("image_size") or 224)
    text_h = arch.hidden_size
    vtype = str(vc.get("model_type") or "")
    archs = " ".join(arch.architectures)
    if vtype.startswith("siglip"):  # SiglipVisionModel (transformers/vllm siglip.py) + Gemma3MultiModalProjector
        n_pos = (image // patch) ** 2
        tower = chans * patch * patch * h + h + n_pos * h  # patch conv (+bias), position embedding
        tower += _vit_layers(n, h, inter, bias=True, gated=False, norm_bias=True) + 2 * h  # post_layernorm
        if vc.get("vision_use_head"):
            tower += 4 * h * h + 4 * h + h + 2 * h + 2 * h * inter + inter + h  # attention-pooling head
        return tower + h * text_h + h  # mm_input_projection_weight, mm_soft_emb_norm
    if vtype.startswith("llama4"):  # Llama4VisionModel + Llama4MultiModalProjector (vllm mllama4.py)
        n_pos = (image // patch) ** 2 + 1
        tower = chans * patch * patch * h + h + n_pos * h + 4 * h  # unfold conv, class emb, pos emb, pre/post LN
        tower += _vit_layers(n, h, inter, bias=True, gated=False, norm_bias=True)
        proj_in, proj_out = int(vc.get("projector_input_dim") or 4096), int(vc.get("projector_output_dim") or 4096)
        tower += inter * proj_in + proj_out * proj_out  # pixel-shuffle adapter fc1/fc2 (no bias)
        return tower + int(vc.get("vision_output_dim") or proj_out) * text_h  # multi_modal_projector.linear_1
    if "Qwen2_5_VL" in archs:  # vllm qwen2_5_vl.py Qwen2_5_VisionTransformer (tower depth is `depth`)
        return _qwen25_vl_tower(vc, text_h)
    if vtype.startswith(("qwen3_vl", "qwen3_5")):  # vllm qwen3_vl.py Qwen3_VisionTransformer (also Qwen3.5's)
        return _qwen3_vl_tower(vc)
    if "Pixtral" in archs or "Mistral3" in archs or vtype == "pixtral":  # PixtralVisionModel + Mistral3 projector
        tower = chans * patch * patch * h + h  # patch_conv (no bias), ln_pre
        tower += _vit_layers(n, h, inter, bias=False, gated=True, norm_bias=False)
        merge = int(arch.raw.get("spatial_merge_size") or vc.get("spatial_merge_size") or 1)
        proj_bias = bool(arch.raw.get("multimodal_projector_bias"))
        proj = h + merge * merge * h * h + h * text_h + text_h * text_h  # norm, patch_merger, linear_1, linear_2
        return tower + proj + (2 * text_h if proj_bias else 0)
    # Generic pre-LN ViT (CLIP-like) + a 2-layer projector: an estimate for towers not modelled above.
    n_pos = (image // patch) ** 2 + 1
    tower = chans * patch * patch * h + n_pos * h + _vit_layers(n, h, inter, bias=True, gated=False, norm_bias=True)
    return tower + h * text_h + text_h * text_h + 2 * text_h


# ------------------------------------------------------------------------------ totals


def padded_vocab(arch: ModelArch) -> int:
    return round_up(arch.vocab_size, VOCAB_PADDING)


_BY_ARCH: dict[tuple[str, int], tuple[ModelArch, int]] = {}


def _memo(kind: str, arch: ModelArch, compute: Callable[[ModelArch], int]) -> int:
    """Memoize a per-model count on the arch object's identity (ModelArch holds dicts: not hashable).
    The entry keeps the object alive and is checked, so a reused id never returns another model's count."""
    hit = _BY_ARCH.get((kind, id(arch)))
    if hit is not None and hit[0] is arch:
        return hit[1]
    if len(_BY_ARCH) > 1024:
        _BY_ARCH.clear()
    value = compute(arch)
    _BY_ARCH[(kind, id(arch))] = (arch, value)
    return value


def text_params(arch: ModelArch) -> int:
    """Language-model parameters as a checkpoint stores them: unpadded vocab, tied lm_head once, no rope cache."""
    return _memo("text", arch, _text_params)


def _text_params(arch: ModelArch) -> int:
    n = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    n += arch.hidden_size * (2 if arch.norm_has_bias else 1)  # final norm
    for rep, count in layer_classes(arch):
        n += sum(t.numel for t in layer_tensors(arch, rep)) * count
    return n


def total_params(arch: ModelArch) -> int:
    """Everything vLLM loads: the language model plus, for multimodal configs, the vision tower."""
    return text_params(arch) + vision_params(arch)


def active_params(arch: ModelArch) -> int:
    """Parameters touched per token (MoE: top-k routed experts plus shared experts)."""
    return _memo("active", arch, _active_params)


def _active_params(arch: ModelArch) -> int:
    moe = arch.moe
    if moe is None:
        return total_params(arch)
    mats = 3 if arch.gated_mlp else 2
    width = moe.latent_size or arch.hidden_size
    unused = (moe.num_experts - moe.experts_per_token) * mats * width * moe.moe_intermediate_size
    n_moe_layers = sum(count for rep, count in layer_classes(arch) if _is_moe_layer(arch, rep))
    return total_params(arch) - unused * n_moe_layers


def routed_expert_params(arch: ModelArch) -> int:
    """Routed-expert weights over all layers (the part of an MoE a decode step reads only where routed)."""
    return _memo("experts", arch, lambda a: sum(layer_params(a, rep).expert * n for rep, n in layer_classes(a)))


def mtp_params(arch: ModelArch) -> int:
    """Parameters of the multi-token-prediction layers a DeepSeek-V3 checkpoint stores after the main
    layers (`num_nextn_predict_layers`): one MoE decoder layer plus enorm, hnorm, eh_proj (2H -> H) and
    shared_head.norm each, and its own stored copies of embed_tokens and shared_head.head. vLLM loads
    them only for MTP speculative decoding."""
    n = _text_raw(arch).get("num_nextn_predict_layers")
    if not isinstance(n, int) or n <= 0:
        return 0
    h = arch.hidden_size
    if arch.model_type == "nemotron_h":
        return n * _nemotron_h_mtp_step(arch)
    last = arch.num_layers - 1
    per = sum(t.numel for t in layer_tensors(arch, last)) + 3 * h + 2 * h * h + 2 * arch.vocab_size * h
    return n * per


def _nemotron_h_mtp_step(arch: ModelArch) -> int:
    """One NemotronH MTP step (vllm nemotron_h_mtp.py): one block per character of mtp_hybrid_override_pattern
    (or mtp_layers_block_type), '*' attention and 'E' MoE, each with its norm, plus enorm, hnorm, eh_proj
    (2H -> H) and a final norm; embed_tokens and lm_head are shared with the main model."""
    raw = _text_raw(arch)
    blocks = raw.get("mtp_hybrid_override_pattern") or raw.get("mtp_layers_block_type") or "*E"
    kinds = {"*": "full_attention", "attention": "full_attention", "E": "mlp", "moe": "mlp"}
    h, n = arch.hidden_size, 0
    for block in blocks:
        kind = kinds.get(block)
        rep = next((i for i, k in enumerate(arch.layer_types)
                    if k == kind and (kind != "mlp" or _is_moe_layer(arch, i))), None)
        if rep is not None:
            n += sum(t.numel for t in layer_tensors(arch, rep))
    return n + 3 * h + 2 * h * h


def mtp_layer_count(arch: ModelArch) -> int:
    """MTP modules vLLM builds for `--speculative-config '{"method": "mtp"}'`: num_nextn_predict_layers
    (DeepSeek-V3, GLM-4.5, MiMo), mtp_num_hidden_layers (Qwen3.5), or 1 for Qwen3-Next, whose config omits the key
    (vllm qwen3_next_mtp.py Qwen3NextMultiTokenPredictor: getattr(config, "num_nextn_predict_layers", 1)); 0: none."""
    raw = _text_raw(arch)
    for key in ("num_nextn_predict_layers", "mtp_num_hidden_layers"):
        n = raw.get(key, arch.raw.get(key))
        if isinstance(n, int) and not isinstance(n, bool):
            return max(0, n)
    return 1 if arch.model_type == "qwen3_next" else 0


def _mtp_step_tensors(arch: ModelArch) -> list[tuple[int, Tensor]]:
    """(representative layer, tensor) of one MTP module as vLLM builds it, without embed_tokens / lm_head:
    * DeepSeek / GLM-4.5 / MiMo (vllm deepseek_mtp.py DeepSeekMultiTokenPredictorLayer, glm4_moe_mtp.py): one
      decoder layer like the last one, enorm + hnorm + shared_head.norm, eh_proj = nn.Linear(2H, H) (replicated,
      never quantized);
    * Qwen3-Next / Qwen3.5 (qwen3_next_mtp.py): one full-attention decoder layer, pre_fc_norm_hidden,
      pre_fc_norm_embedding, norm, fc = ColumnParallelLinear(2H, H, quant_config=None) (split over TP);
    * Nemotron-H (nemotron_h_mtp.py): one block per mtp pattern character, enorm, hnorm, eh_proj, final norm."""
    h = arch.hidden_size
    out: list[tuple[int, Tensor]] = []
    if arch.model_type == "nemotron_h":
        raw = _text_raw(arch)
        blocks = raw.get("mtp_hybrid_override_pattern") or raw.get("mtp_layers_block_type") or "*E"
        kinds = {"*": "full_attention", "attention": "full_attention", "E": "mlp", "moe": "mlp"}
        for block in blocks:
            kind = kinds.get(block)
            rep = next((i for i, k in enumerate(arch.layer_types)
                        if k == kind and (kind != "mlp" or _is_moe_layer(arch, i))), None)
            if rep is not None:
                out += [(rep, t) for t in layer_tensors(arch, rep)]
        return [*out, (0, Tensor(NORM, REPLICATED, 3 * h)), (0, Tensor(MTP_PROJ, REPLICATED, h, 2 * h))]
    attn = [i for i, k in enumerate(arch.layer_types) if k in ("full_attention", "sliding_attention")]
    rep = attn[-1] if attn else arch.num_layers - 1
    out = [(rep, t) for t in layer_tensors(arch, rep)]
    shard = TP if arch.model_type.startswith(("qwen3_next", "qwen3_5")) else REPLICATED
    return [*out, (rep, Tensor(NORM, REPLICATED, 3 * h)), (rep, Tensor(MTP_PROJ, shard, h, 2 * h))]


def mtp_rank_bytes(arch: ModelArch, *, tp: int, act_bytes: int, linear_bytes_per_param: float, dp: int = 1,
                   ep: bool = False, share_vocab: bool = True) -> int:
    """Bytes the MTP modules add to one GPU of the last PP stage (vLLM builds the drafter there only:
    gpu_model_runner.py `if self.speculative_config and get_pp_group().is_last_rank`). With one PP stage vLLM
    shares the target's embed_tokens and lm_head (llm_base_proposer.py _maybe_share_embeddings /
    _maybe_share_lm_head, "Detected MTP model"); with PP > 1 the embedding is loaded separately (`share_vocab`
    False: one embedding copy, V_pad/TP x H). Quantized like the target's layer it copies (the MTP layer is built
    with the target's quant_config); MLA W_UK_T/W_UV copies as in rank_weights."""
    n = mtp_layer_count(arch)
    if n <= 0:
        return 0
    quant = arch.quant
    kv_div = min(tp, arch.num_kv_heads) if arch.num_kv_heads > 0 else tp
    q = a = f = 0.0
    for layer, t in _mtp_step_tensors(arch):
        share = _rank_share(t, tp=tp, kv_div=kv_div, expert_group=tp * dp, ep=ep)
        if t.fp32:
            f += share
        elif is_quantized(quant, t.group, layer):
            q += share
        else:
            a += share
    quantizing = not (quant is None and linear_bytes_per_param == act_bytes)
    if arch.mla is not None and quantizing and is_quantized(quant, ATTENTION, arch.num_layers - 1):
        m = arch.mla
        a += m.kv_lora_rank * arch.num_attention_heads / tp * (m.qk_nope_head_dim + m.v_head_dim)
    per_module = int(q * linear_bytes_per_param) + int(a * act_bytes) + int(f * 4)
    vocab = 0 if share_vocab else cdiv(padded_vocab(arch), tp) * arch.hidden_size * act_bytes
    return n * per_module + vocab


def block_scale_params(arch: ModelArch, *, include_mtp: bool = False) -> int:
    """fp32 `weight_scale_inv` elements of an FP8 block-quantized checkpoint (one per block x block tile of
    every quantized 2-D weight), as counted in a safetensors total."""
    q = arch.quant
    if q is None or q.block_size is None:
        return 0
    bn, bk = q.block_size
    n = 0
    classes = list(layer_classes(arch))
    if include_mtp and mtp_params(arch):
        classes.append((arch.num_layers - 1, int(_text_raw(arch).get("num_nextn_predict_layers") or 0)))
    for i, count in classes:
        for t in layer_tensors(arch, i):
            if t.group in LINEAR_GROUPS and is_quantized(q, t.group, i):
                n += cdiv(t.rows, bn) * cdiv(t.cols, bk) * t.count * count
    return n


def pp_layer_split(num_layers: int, pp: int) -> list[range]:
    """Layers per pipeline stage as vLLM assigns them (vllm/distributed/utils.py get_pp_indices):
    base = N // PP each; the remainder goes one layer each to stages PP-2, PP-3, ... (never the last).
    """
    base, rem = divmod(num_layers, pp)
    sizes = [base] * pp
    for i in range(rem):
        sizes[pp - 2 - i if pp >= 2 else 0] += 1
    out, start = [], 0
    for s in sizes:
        out.append(range(start, start + s))
        start += s
    return out


# ------------------------------------------------------------------------------ per-rank bytes


@dataclass(frozen=True)
class RankWeights:
    """Weight bytes held by one (TP rank, PP stage, DP rank)."""

    linear_bytes: int  # weights stored in the quantized format (linear_bytes_per_param)
    other_bytes: int  # activation-dtype weights: embeddings, lm_head, norms, routers, unquantized groups, rope
    layers: int
    mla_copy_bytes: int = 0  # MLA W_UK_T/W_UV dequantized copies (included in other_bytes)
    vision_bytes: int = 0  # vision tower + projector (included in linear/other bytes)

    @property
    def total_bytes(self) -> int:
        return self.linear_bytes + self.other_bytes


def _rank_share(t: Tensor, *, tp: int, kv_div: int, expert_group: int, ep: bool) -> float:
    if t.shard == TP:
        return t.numel / tp
    if t.shard == KV:
        return t.numel / kv_div
    if t.shard == EXPERT:
        if ep:
            return t.rows * t.cols * cdiv(t.count, expert_group)
        return t.numel / expert_group
    return float(t.numel)


@dataclass(frozen=True)
class Mxfp4Storage:
    """How vLLM's MXFP4 MoE backend holds gpt-oss routed experts on one GPU (default: the Triton backend vLLM
    picks on Hopper, `oracle/mxfp4.py select_mxfp4_moe_backend`).

    * The expert intermediate size per rank is I // group, rounded up to `intermediate_align`
      (`mxfp4_round_up_hidden_size_and_intermediate_size`: Triton 64; Marlin 128 and hidden 256; TRT-LLM 256;
      vLLM 0.14.1 `Mxfp4MoEMethod.create_weights` the same), and the weights, scales and biases are allocated
      at the padded size: gpt-oss-20b at TP2 holds 1,472 instead of 1,440 intermediate rows per expert.
    * `value_pad_bytes`: vLLM 0.19 - 0.20 vendor a triton_kernels whose `HopperMXValueLayout.swizzle_data`
      pre-pads both matrix dims of the swizzled 4-bit values to 64 bytes (`third_party/triton_kernels/
      tensor_details/layout_details/hopper_value.py`); 0.14.1, 0.25, 0.29 and 0.33 do not (0 = none).
    * `scale_swizzle_rows`: the Triton backend keeps a swizzled copy of the e8m0 scales
      (`_swizzle_mxfp4` -> `HopperMXScaleLayout.swizzle_data`, rows padded to 2 x num_warps x 2 x 8 = 256, the
      scale groups to an even count); any further copy (vLLM <= 0.20 keeps the loaded w13/w2_weight_scale too,
      0.25+ deletes it) is unpadded. 0 = no swizzled copy.
    * `fp32_biases`: the Triton, TRT-LLM and CK paths convert the expert biases to float32
      (`convert_to_mxfp4_moe_kernel_format`: w13_bias/w2_bias `.to(torch.float32)`).
    The 4-bit values take 0.5 B per element; the rest of `linear_bytes_per_param` counts the scale copies
    (1/32 B each).
    """

    intermediate_align: int = 64
    value_pad_bytes: int = 0
    scale_swizzle_rows: int = 256
    fp32_biases: bool = True


def mxfp4_intermediate_per_rank(inter: int, group: int, *, ep: bool, align: int) -> int:
    """The expert intermediate rows one rank allocates: FusedMoE's intermediate_size_per_partition (I // group,
    or all of I with expert parallelism) rounded up to the backend's alignment."""
    return round_up(inter if ep else inter // group, align)


def _mxfp4_expert_bytes(experts: int, inter: int, hidden: int, mats: int, *, group: int, ep: bool,
                        storage: Mxfp4Storage, bytes_per_param: float) -> float:
    """Bytes of one layer's routed experts (`mats` x `inter` rows by `hidden` each) on one rank under MXFP4."""
    local = cdiv(experts, group) if ep else experts
    i_rank = mxfp4_intermediate_per_rank(inter, group, ep=ep, align=storage.intermediate_align)
    pad = storage.value_pad_bytes
    if pad:  # w13 values (E, 2I, H/2 bytes) and w2 values (E, H, I/2 bytes), both dims padded to `pad` bytes
        values = (round_up(hidden, 2 * pad) * round_up((mats - 1) * i_rank, pad)
                  + round_up(i_rank, 2 * pad) * round_up(hidden, pad))
    else:
        values = mats * i_rank * hidden
    plain_scales = mats * i_rank * hidden / MXFP4_BLOCK  # one e8m0 byte per 32 values
    copies = max(0.0, bytes_per_param - 0.5) * MXFP4_BLOCK
    rows = storage.scale_swizzle_rows
    if rows and copies >= 1:  # one swizzled copy: w13 (2I x H/32) and w2 (H x I/32), rows padded
        swizzled = (round_up((mats - 1) * i_rank, rows) * round_up(cdiv(hidden, MXFP4_BLOCK), 2)
                    + round_up(hidden, rows) * round_up(cdiv(i_rank, MXFP4_BLOCK), 2))
        scales = (copies - 1) * plain_scales + swizzled
    else:
        scales = copies * plain_scales
    return local * (0.5 * values + scales)


def rank_weights(arch: ModelArch, *, tp: int, pp: int, stage: int, act_bytes: int,
                 linear_bytes_per_param: float, rope_cache_bytes: int, dp: int = 1, ep: bool = False,
                 include_vision: bool = True, mxfp4: Mxfp4Storage | None = None) -> RankWeights:
    """Bytes one GPU of PP stage `stage` holds, at TP degree `tp` (and DP degree `dp` for MoE experts).

    `act_bytes` is the activation dtype size (2 for bf16/fp16); `linear_bytes_per_param` the storage of
    the linear weights the checkpoint format quantizes (see `is_quantized`; equal to `act_bytes` for an
    unquantized model, the online format's size for `--quantization`). Routed experts are divided over
    TP x DP; with `ep` each GPU holds ceil(E / (TP x DP)) whole experts (the largest rank). `mxfp4`: how an
    MXFP4 checkpoint's experts are padded and stored (None: plain element counts x linear_bytes_per_param).
    """
    if tp < 1 or pp < 1 or dp < 1 or not 0 <= stage < pp:
        raise ValueError(f"rank_weights: bad layout tp={tp} pp={pp} dp={dp} stage={stage}")
    quant = arch.quant
    quantizing = not (quant is None and linear_bytes_per_param == act_bytes)  # False: a plain bf16/fp16 run
    layers = pp_layer_split(arch.num_layers, pp)[stage]
    kv_div = min(tp, arch.num_kv_heads) if arch.num_kv_heads > 0 else tp
    expert_group = tp * dp
    q_params = 0.0  # elements stored in the quantized format
    a_params = 0.0  # elements stored in the activation dtype
    f_params = 0.0  # elements held in float32
    mla_copy = 0.0
    mx = mxfp4 if quant is not None and quant.method.lower() == "mxfp4" else None
    for i, count in layer_classes(arch, layers):  # alike layers once, times their count
        for t in layer_tensors(arch, i):
            if mx is not None and t.group == EXPERTS and arch.moe is not None and linear_bytes_per_param > 0:
                mats = 3 if arch.gated_mlp else 2
                expert_bytes = _mxfp4_expert_bytes(t.count, arch.moe.moe_intermediate_size, t.cols, mats,
                                                   group=expert_group, ep=ep, storage=mx,
                                                   bytes_per_param=linear_bytes_per_param)
                q_params += expert_bytes / linear_bytes_per_param * count
                continue
            share = _rank_share(t, tp=tp, kv_div=kv_div, expert_group=expert_group, ep=ep) * count
            if mx is not None and t.group == EXPERT_BIAS and t.shard == EXPERT and arch.moe is not None:
                inter = arch.moe.moe_intermediate_size
                i_rank = mxfp4_intermediate_per_rank(inter, expert_group, ep=ep, align=mx.intermediate_align)
                share = share * i_rank / (inter if ep else inter / expert_group)  # biases of the padded rows
            if t.fp32 or (mx is not None and mx.fp32_biases and t.group == EXPERT_BIAS):
                f_params += share
            elif is_quantized(quant, t.group, i):
                q_params += share
            else:
                a_params += share
        if arch.mla is not None and quantizing and is_quantized(quant, ATTENTION, i):
            m = arch.mla
            mla_copy += m.kv_lora_rank * arch.num_attention_heads / tp * (m.qk_nope_head_dim + m.v_head_dim) * count
    embed = cdiv(padded_vocab(arch), tp) * arch.hidden_size
    first, last = stage == 0, stage == pp - 1
    if first:
        a_params += embed
    if last:
        a_params += arch.hidden_size * (2 if arch.norm_has_bias else 1)
        if not arch.tie_word_embeddings or not first:
            if is_quantized(quant, LM_HEAD):
                q_params += embed
            else:
                a_params += embed  # lm_head (a tied model's last stage still holds its own copy when PP > 1)
    vision = 0.0
    if include_vision:
        vp = vision_params(arch) / tp
        vq = is_quantized(quant, VISION)
        vision = vp * (linear_bytes_per_param if vq else act_bytes)
        if vq:
            q_params += vp
        else:
            a_params += vp
    mla_bytes = int(mla_copy * act_bytes)
    return RankWeights(linear_bytes=int(q_params * linear_bytes_per_param),
                       other_bytes=int(a_params * act_bytes) + int(f_params * 4) + mla_bytes + rope_cache_bytes,
                       layers=len(layers), mla_copy_bytes=mla_bytes, vision_bytes=int(vision))
