"""Parameter counting and weight bytes per rank, the way vLLM shards and stores them.

Pure: no I/O. Counts are exact for dense decoder models (Llama, Qwen, Mistral, Phi, Falcon,
Gemma): embedding and lm_head (padded to a multiple of 64 rows, vLLM's DEFAULT_VOCAB_PADDING_SIZE,
split across TP), q/k/v/o (KV heads replicated when TP > KV heads), gated or plain MLP, biases,
norms, and the rotary cos/sin cache. MoE, MLA and SSM layers are counted from their geometry
(issue 4 deepens their sharding and quantized layouts).

Quantized storage: linear layers inside the decoder blocks take `linear_bytes_per_param` (from
the rule pack); embeddings, lm_head, norms, routers and biases stay in the activation dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.models.arch import ModelArch
from planner.units import round_up

VOCAB_PADDING = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one decoder layer, split by how vLLM shards them across TP ranks."""

    sharded_linear: int  # column/row-parallel weights: divided by TP
    kv_linear: int  # k and v projections (per KV head): divided by min(TP, kv_heads), replicated beyond
    replicated_linear: int  # replicated on every TP rank (MLA fused_qkv_a, routers)
    small: int  # norms and biases: kept in the activation dtype, (mostly) replicated


def _attention(arch: ModelArch) -> tuple[int, int, int, int]:
    """(sharded linear, kv linear, replicated linear, small) for one attention layer."""
    h = arch.hidden_size
    if arch.mla is not None:
        m = arch.mla
        nh = arch.num_attention_heads
        q_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            q = h * m.q_lora_rank + m.q_lora_rank * nh * q_head  # q_a (replicated in vLLM's fused a-proj) + q_b
            q_a = h * m.q_lora_rank
            small = m.q_lora_rank  # q_a_layernorm
        else:
            q, q_a, small = h * nh * q_head, 0, 0
        kv_a = h * (m.kv_lora_rank + m.qk_rope_head_dim)
        kv_b = m.kv_lora_rank * nh * (m.qk_nope_head_dim + m.v_head_dim)
        o = nh * m.v_head_dim * h
        small += m.kv_lora_rank  # kv_a_layernorm
        return (q - q_a) + kv_b + o, 0, q_a + kv_a, small
    nh, nkv, hd, vhd = arch.num_attention_heads, arch.num_kv_heads, arch.head_dim, arch.v_head_dim
    q = h * nh * hd
    kv = h * nkv * (hd + vhd)
    o = nh * vhd * h
    small = 0
    if arch.attention_bias:
        small += nh * hd + nkv * (hd + vhd)
    if arch.qk_norm:
        small += 2 * hd
    return q + o, kv, 0, small


def _mlp(arch: ModelArch, layer: int) -> tuple[int, int]:
    """(sharded linear, replicated linear) for one layer's MLP or MoE block."""
    h = arch.hidden_size
    mats = 3 if arch.gated_mlp else 2
    moe = arch.moe
    if moe is not None and (not moe.moe_layers or layer in moe.moe_layers):
        experts = moe.num_experts * mats * h * moe.moe_intermediate_size
        shared = mats * h * moe.shared_expert_intermediate_size
        router = h * moe.num_experts
        return experts + shared, router
    return mats * h * arch.intermediate_size, 0


def _ssm(arch: ModelArch) -> int:
    """Parameters of one Mamba / linear-attention mixer (approximate; sharded across TP)."""
    s = arch.ssm
    if s is None:
        return 0
    h = arch.hidden_size
    if s.kind == "gdn":
        qk = s.num_k_heads * s.k_head_dim
        v = s.num_v_heads * s.v_head_dim
        in_proj = h * (2 * qk + 2 * v) + h * 2 * s.num_v_heads
        conv = (2 * qk + v) * s.conv_kernel
        return in_proj + conv + v * h + 2 * s.num_v_heads + s.v_head_dim
    d_inner = s.intermediate_size or s.expand * h
    if s.kind == "mamba2":
        in_proj = h * (2 * d_inner + 2 * s.n_groups * s.state_size + s.num_heads)
        conv = (d_inner + 2 * s.n_groups * s.state_size) * s.conv_kernel
        return in_proj + conv + d_inner * h + 3 * s.num_heads + d_inner
    dt_rank = -(-h // 16)
    return (h * 2 * d_inner + d_inner * s.conv_kernel + d_inner * (dt_rank + 2 * s.state_size)
            + dt_rank * d_inner + d_inner * s.state_size + d_inner * h + 3 * d_inner)


def layer_params(arch: ModelArch, layer: int) -> LayerParams:
    """Parameter split of decoder layer `layer`."""
    kind = arch.layer_types[layer] if layer < len(arch.layer_types) else "full_attention"
    norms = arch.norms_per_layer * arch.hidden_size * (2 if arch.norm_has_bias else 1)
    if kind in ("mamba", "linear_attention"):
        mixer_sharded, kv, repl, small = _ssm(arch), 0, 0, 0
    else:
        mixer_sharded, kv, repl, small = _attention(arch)
    mlp_sharded, mlp_repl = (0, 0) if (arch.intermediate_size == 0 and arch.moe is None) else _mlp(arch, layer)
    return LayerParams(sharded_linear=mixer_sharded + mlp_sharded, kv_linear=kv,
                       replicated_linear=repl + mlp_repl, small=small + norms)


def padded_vocab(arch: ModelArch) -> int:
    return round_up(arch.vocab_size, VOCAB_PADDING)


def total_params(arch: ModelArch) -> int:
    """Published-style parameter count: unpadded vocab, tied lm_head counted once, no rope cache."""
    n = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    n += arch.hidden_size * (2 if arch.norm_has_bias else 1)  # final norm
    for i in range(arch.num_layers):
        lp = layer_params(arch, i)
        n += lp.sharded_linear + lp.kv_linear + lp.replicated_linear + lp.small
    return n


def active_params(arch: ModelArch) -> int:
    """Parameters touched per token (MoE: top-k routed experts plus shared experts)."""
    moe = arch.moe
    if moe is None:
        return total_params(arch)
    mats = 3 if arch.gated_mlp else 2
    unused = (moe.num_experts - moe.experts_per_token) * mats * arch.hidden_size * moe.moe_intermediate_size
    n_moe_layers = len(moe.moe_layers) if moe.moe_layers else arch.num_layers
    return total_params(arch) - unused * n_moe_layers


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


@dataclass(frozen=True)
class RankWeights:
    """Weight bytes held by one (TP rank, PP stage)."""

    linear_bytes: int
    other_bytes: int  # embeddings, lm_head, norms, biases, routers, rope cache
    layers: int

    @property
    def total_bytes(self) -> int:
        return self.linear_bytes + self.other_bytes


def rank_weights(arch: ModelArch, *, tp: int, pp: int, stage: int, act_bytes: int,
                 linear_bytes_per_param: float, rope_cache_bytes: int) -> RankWeights:
    """Bytes one GPU of PP stage `stage` holds, at TP degree `tp`.

    `act_bytes` is the activation dtype size (2 for bf16/fp16); `linear_bytes_per_param` the
    storage of decoder linear weights (2 unquantized, ~1 for FP8, ~0.52 for 4-bit...).
    """
    layers = pp_layer_split(arch.num_layers, pp)[stage]
    kv_div = min(tp, arch.num_kv_heads) if arch.num_kv_heads > 0 else tp
    linear = 0.0
    other = 0
    for i in layers:
        lp = layer_params(arch, i)
        linear += lp.sharded_linear / tp + lp.kv_linear / kv_div + lp.replicated_linear
        other += lp.small
    v_rows = padded_vocab(arch) // tp
    embed = v_rows * arch.hidden_size
    first, last = stage == 0, stage == pp - 1
    if first:
        other += embed
    if last:
        other += arch.hidden_size * (2 if arch.norm_has_bias else 1)
        if not arch.tie_word_embeddings or not first:
            other += embed  # lm_head (a tied model's last stage still holds its own copy when PP > 1)
    return RankWeights(linear_bytes=int(linear * linear_bytes_per_param),
                       other_bytes=other * act_bytes + rope_cache_bytes, layers=len(layers))
