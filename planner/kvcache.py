"""KV-cache layout the way vLLM builds it: per-layer specs, hybrid groups, blocks and token capacity.

Pure: no I/O. Mirrors vllm/v1/kv_cache_interface.py and vllm/v1/core/kv_cache_utils.py
(shared/spec/vllm-accounting.md sections 1.7, 2, 2.3):

- every attention layer has a page of `block_size` tokens: 2 x kv_heads_per_gpu x head_dim x bytes
  (MLA: one latent "head" of kv_lora_rank + rope dim, never split across TP);
- Mamba / linear-attention layers hold a fixed recurrent state per request, padded to the
  attention page (the attention block size is raised until one page holds that state);
- layers are bucketed by kind and split into groups of equal size G = min(bucket sizes) (or the
  max when max < 1.5 x min); short buckets are padded. One block id spans one layer of every
  slot in a group, so bytes_per_block = G x page;
- capacity: from vLLM 0.29 group-aware (sum over groups of the blocks one request needs); before,
  printed tokens = num_blocks // num_groups x block_size.

Sliding-window and chunked layers are billed as full attention when the hybrid KV manager is off
(vLLM turns it off for chunked local attention, e.g. Llama-4). Layers without a token mixer ("mlp": Nemotron-H's
MLP and MoE layers) hold no cache at all.

Recurrent states are kept in the model dtype, not the KV-cache dtype (CacheConfig.mamba_cache_dtype "auto" ->
model dtype, vllm/model_executor/layers/mamba/mamba_utils.py MambaStateDtypeCalculator), except a temporal
(SSM) state the model keeps in another dtype: NemotronH's mamba_ssm_cache_dtype, float32 by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.models.arch import ModelArch
from planner.models.params import layer_kind_counts
from planner.units import cdiv

ATTENTION_KINDS = ("full_attention", "sliding_attention", "chunked_attention")
STATE_KINDS = ("mamba", "linear_attention")
NO_CACHE_KINDS = ("mlp",)
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class KvGroup:
    """A KV-cache group: `slots` layers of one kind sharing block ids (padding slots included)."""

    kind: str  # full_attention | sliding_attention | chunked_attention | state
    slots: int
    window: int | None = None  # sliding window or attention chunk, tokens


@dataclass(frozen=True)
class KvLayout:
    """How one GPU's KV memory is cut into blocks."""

    block_size: int  # tokens per block (attention); raised for Mamba hybrids
    page_bytes: int  # one layer's page (all groups use the same page size)
    groups: tuple[KvGroup, ...]
    attention_layers: int  # real attention layers on this GPU (stage)
    state_layers: int
    # speculative drafter layers whose page differs from the target's (EAGLE head, draft model): vLLM >= 0.11 puts
    # them with the target's full-attention layers in one UniformTypeKVCacheSpecs group whose page is the sum of the
    # layers' pages (vllm/v1/kv_cache_interface.py), so one block id costs these bytes more
    extra_block_bytes: int = 0

    @property
    def bytes_per_block(self) -> int:
        return max((g.slots for g in self.groups), default=0) * self.page_bytes + self.extra_block_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """Attention KV bytes per token on this GPU (real layers, not padding)."""
        if not self.block_size:
            return 0
        return (self.attention_layers * self.page_bytes + self.extra_block_bytes) // self.block_size


def attention_bytes_per_token_per_layer(arch: ModelArch, tp: int, kv_bytes: int) -> int:
    if arch.mla is not None:
        return (arch.mla.kv_lora_rank + arch.mla.qk_rope_head_dim) * kv_bytes + dsa_indexer_bytes_per_token(arch)
    nkv_gpu = max(1, arch.num_kv_heads // tp)
    return nkv_gpu * (arch.head_dim + arch.v_head_dim) * kv_bytes


def dsa_indexer_bytes_per_token(arch: ModelArch) -> int:
    """DeepSeek-V3.2 / GLM-5 sparse-attention indexer keys cached next to each MLA layer: index_head_dim FP8
    bytes plus a float32 scale per 128 (vllm deepseek_v2.py Indexer: DeepseekV32IndexerCache(head_dim=
    index_head_dim + index_head_dim // 128 * 4, dtype=uint8)), whatever the KV-cache dtype; 0 without one."""
    dim = arch.raw.get("index_head_dim") if isinstance(arch.raw, dict) else None
    nested = arch.raw.get("text_config") if isinstance(arch.raw, dict) else None
    if dim is None and isinstance(nested, dict):
        dim = nested.get("index_head_dim")
    if arch.mla is None or not isinstance(dim, int) or dim <= 0:
        return 0
    return dim + dim // 128 * 4


def state_bytes_per_layer(arch: ModelArch, tp: int, state_bytes: int) -> int:
    """Recurrent state of one Mamba / linear-attention layer per request on one GPU (spec 2.3 table), with
    `state_bytes` the bytes of the state dtype (the model dtype; a temporal state held in another dtype, such
    as NemotronH's float32 SSM state, takes that dtype's size)."""
    s = arch.ssm
    if s is None:
        return 0
    k = s.conv_kernel - 1
    ssm_bytes = _DTYPE_BYTES[s.ssm_state_dtype] if s.ssm_state_dtype else state_bytes
    if s.kind == "lightning":  # MiniMax linear attention: (heads/TP, head_dim, head_dim), no conv state
        return (s.num_heads // tp) * s.head_dim * s.head_dim * ssm_bytes
    if s.kind == "gdn":
        conv = k * (2 * s.num_k_heads * s.k_head_dim + s.num_v_heads * s.v_head_dim) // tp
        ssm = (s.num_v_heads // tp) * s.v_head_dim * s.k_head_dim
        return (conv + ssm) * state_bytes
    d_inner = s.intermediate_size or s.expand * arch.hidden_size
    if s.kind == "mamba2":
        groups = s.n_groups + (tp - s.n_groups if s.n_groups % tp else 0)
        conv = k * (d_inner + 2 * groups * s.state_size) // tp
        ssm = (s.num_heads // tp) * s.head_dim * s.state_size
        return conv * state_bytes + ssm * ssm_bytes
    return (k * d_inner // tp + (d_inner // tp) * s.state_size) * state_bytes


def _group_sizes(buckets: dict[tuple[str, int | None], int]) -> int:
    sizes = [n for n in buckets.values() if n > 0]
    if not sizes:
        return 0
    lo, hi = min(sizes), max(sizes)
    return hi if hi < 1.5 * lo else lo


def kv_layout(arch: ModelArch, layers: range, *, tp: int, kv_bytes: int, block_size: int, hybrid_manager: bool,
              align: int = 16, state_bytes: int | None = None, extra_layers: int = 0,
              extra_bytes_per_token: int = 0) -> KvLayout:
    """The KV layout of the layers one GPU holds (one PP stage). `state_bytes`: bytes of the dtype recurrent
    states are kept in (the model dtype; None: the KV dtype, the planner's older approximation).

    `extra_layers` full-attention layers of a speculative drafter (MTP layers, EAGLE head, draft model; the last
    PP stage only), each `extra_bytes_per_token` KV bytes per token on this GPU (planner/features/speculative.py
    draft_kv): vLLM V1 lists them in the same KV-cache spec as the target's layers. A layer with the target's
    page joins the target's full-attention group (same spec, e.g. an MTP MLA layer); a different page rides in
    the same block ids at its own page size (UniformTypeKVCacheSpecs, vLLM >= 0.11)."""
    state_b = kv_bytes if state_bytes is None else state_bytes
    counts = layer_kind_counts(arch, layers)  # per kind, not per layer: 100,000-layer configs stay fast
    if arch.attention_chunk_size and counts.get("chunked_attention"):
        hybrid_manager = False  # vLLM auto-disables it for chunked local attention
    per_token = attention_bytes_per_token_per_layer(arch, tp, kv_bytes)
    extra_joined = extra_layers if extra_layers > 0 and extra_bytes_per_token == per_token else 0
    extra_own = extra_layers if extra_layers > 0 and not extra_joined else 0
    if extra_joined:
        counts = dict(counts)
        counts["full_attention"] = counts.get("full_attention", 0) + extra_joined
    buckets: dict[tuple[str, int | None], int] = {}
    for kind, n in counts.items():
        if kind in NO_CACHE_KINDS:
            continue
        if kind in STATE_KINDS:
            key: tuple[str, int | None] = ("state", None)
        elif not hybrid_manager or kind == "full_attention":
            key = ("full_attention", None)
        elif kind == "sliding_attention":
            key = (kind, arch.sliding_window)
        else:
            key = (kind, arch.attention_chunk_size)
        buckets[key] = buckets.get(key, 0) + n
    n_state = buckets.get(("state", None), 0)
    n_attn = sum(n for k, n in buckets.items() if k[0] != "state")
    bs = block_size
    if n_state and n_attn and per_token:
        state = state_bytes_per_layer(arch, tp, state_b)
        bs = max(bs, align * cdiv(state, align * per_token))  # one attention page must hold the state
    page = bs * per_token if per_token else state_bytes_per_layer(arch, tp, state_b)
    g = _group_sizes(buckets)
    groups: list[KvGroup] = []
    for (kind, window), n in sorted(buckets.items(), key=lambda kv: kv[0][0]):
        for _ in range(cdiv(n, g)):
            groups.append(KvGroup(kind=kind, slots=g, window=window))
    return KvLayout(block_size=bs, page_bytes=page, groups=tuple(groups), attention_layers=n_attn,
                    state_layers=n_state, extra_block_bytes=extra_own * extra_bytes_per_token * bs)


def blocks_per_request(layout: KvLayout, max_model_len: int, in_flight_tokens: int, state_blocks: int) -> int:
    """Blocks one max_model_len request reserves across all groups (vLLM 0.33 get_max_concurrency...)."""
    bs = layout.block_size
    total = 0
    for g in layout.groups:
        if g.kind == "full_attention":
            total += cdiv(max_model_len, bs)
        elif g.kind == "sliding_attention" and g.window:
            total += cdiv(min(g.window - 1 + in_flight_tokens, max_model_len), bs) + 1
        elif g.kind == "chunked_attention" and g.window:
            total += cdiv(min(g.window + in_flight_tokens, max_model_len), bs)
        elif g.kind == "state":
            total += state_blocks
        else:
            total += cdiv(max_model_len, bs)
    return total


def capacity(layout: KvLayout, num_blocks: int, max_model_len: int, *, in_flight_tokens: int, state_blocks: int,
             group_aware: bool) -> tuple[int, float]:
    """(kv_cache_tokens, max_concurrency) as vLLM prints them."""
    need = blocks_per_request(layout, max_model_len, in_flight_tokens, state_blocks)
    conc = num_blocks / need if need else 0.0
    if group_aware:
        return int(conc * max_model_len), conc
    n_groups = max(1, len(layout.groups))
    return num_blocks // n_groups * layout.block_size, conc
