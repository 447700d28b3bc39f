"""Per-GPU memory accounting, mirroring vLLM's startup (shared/spec/vllm-accounting.md).

Pure: no I/O. All sizes are int bytes.

    requested  = ceil(total x utilization)          (no ceil before 0.15: `budget_ceil`)
    kv_cache   = requested - weights - activation_peak - non_torch - cuda_graphs(if in budget)
    num_blocks = min over PP stages (kv_cache_stage // bytes_per_block)   (planner/kvcache.py: groups)
    capacity   = num_blocks / blocks one max_model_len request needs; tokens as that version prints them

The profile run processes max_num_batched_tokens tokens, or max(that, max_model_len) when chunked
prefill is off (`chunked_prefill`, the V0 default up to 32k contexts).

Empirical terms come from rule-pack params (names below), calibrated on real vLLM logs:
  activation_sampler_bytes_per_logit, activation_base_gib      sampler peak  = base + k x min(T,S) x V (fused kernels)
  activation_sampler_sort_bytes_per_logit, sampler_sort         sampler peak  = k' x min(T,S) x V (vocabulary sort)
  activation_hidden_factor                                      forward peak  = T x (mlp x I/TP + f x H) x b
  non_torch_gib_tp1, non_torch_gib_tp_multi, non_torch_gib_pp   non-torch growth after the snapshot
  cuda_graph_base_gib, cuda_graph_per_layer_gib                 CUDA-graph estimate
  cuda_graph_in_budget, budget_ceil                             version switches (set by baseline rules)
  context_baseline_gib                                          CUDA context + cuBLAS, outside the budget
  oom_headroom_low_gib                                          headroom below which OOM risk is "medium"
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from planner.features.multimodal import mm_profile_bytes
from planner.kvcache import blocks_per_request, capacity, kv_layout
from planner.models.arch import ModelArch
from planner.models.params import Mxfp4Storage, pp_layer_split, rank_weights
from planner.units import GiB

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # element sizes (physical constants)
FP8_KV = ("fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc")
KV_DTYPES = ("auto", "bfloat16", "float16", *FP8_KV)


@dataclass(frozen=True)
class FeatureMemory:
    """What serving features add to or take from each GPU, sized per layout by planner/features/sizing.py."""

    added_weights: tuple[int, ...] = ()  # per PP stage: LoRA slots and the drafter's weights, beside the model's
    offloaded: tuple[int, ...] = ()  # per PP stage: model weights --cpu-offload-gb keeps in CPU memory
    activation: int = 0  # added to the profile run's transient peak (LoRA buffers, multimodal encoder outputs)
    draft_kv_layers: int = 0  # the drafter's attention layers, on the last stage, in the same KV pool
    draft_kv_bytes_per_token: int = 0  # per draft layer on one GPU (planner/features/speculative.py draft_kv)
    mm: Any = None  # planner/features/multimodal.MMProfile: the encoder batch of the profile run (None: no encoder)
    vision_tower: bool = True  # False when every --limit-mm-per-prompt is 0 and vLLM then builds no tower
    state_blocks: int | None = None  # blocks per request per Mamba group, when not the pack's (prefix caching off)

    def added(self, stage: int) -> int:
        return self.added_weights[stage] if stage < len(self.added_weights) else 0

    def off(self, stage: int) -> int:
        return self.offloaded[stage] if stage < len(self.offloaded) else 0


NO_FEATURES = FeatureMemory()


@dataclass(frozen=True, kw_only=True)
class MemoryInputs:
    """One configuration to account for."""

    total_bytes: int  # CUDA-visible memory per GPU
    tp: int
    pp: int
    dtype: str  # activation dtype the model runs in
    linear_bytes_per_param: float  # decoder linear weights storage (quantization)
    kv_cache_dtype: str
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    enforce_eager: bool
    scales: dict[str, float]  # baseline `scale` effects: quantity -> factor
    free_bytes: int | None = None  # probed free memory (None when not probed)
    dp: int = 1  # data-parallel ranks: MoE experts are sharded over TP x DP (FusedMoEParallelConfig)
    ep: bool = False  # --enable-expert-parallel: whole experts per GPU (same bytes when divisible)
    sampler_sort: bool = False  # the profile run's sampler warm-up sorts the whole vocabulary (PyTorch-native path)
    features: FeatureMemory = NO_FEATURES  # LoRA slots, drafter, CPU offload, multimodal profile


@dataclass(frozen=True, kw_only=True)
class MemoryResult:
    """The accounting of the rank that bounds KV capacity (the binding rank)."""

    total_bytes: int
    budget_bytes: int
    weights_bytes: int
    activation_peak_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    cuda_graph_in_budget: bool
    kv_cache_bytes: int
    free_bytes: int | None
    bytes_per_block: int
    num_blocks: int
    kv_bytes_per_token: int  # per GPU, all layers of the binding stage
    kv_cache_tokens: int
    max_concurrency: float
    max_fitting_model_len: int
    weights_fit: bool  # non-KV memory fits in the budget with room for at least 2 blocks
    fits: bool  # and one max_model_len sequence fits
    headroom_bytes: int  # physical memory left outside vLLM's budget and baseline usage
    oom_risk: str  # low | medium | high
    weights_total_bytes: int  # sum over all ranks of one replica
    # What a decode step streams from the binding rank's weights: weights_bytes, less what only sits in memory
    # (gpt-oss on the MXFP4 Triton layout: the padded shard rows, the loaded scale copy beside the swizzled one,
    # float32 biases), which the perf model was calibrated without (benchmarks/perf_accuracy.py).
    streamed_weights_bytes: int
    kv_groups: int = 1  # KV-cache groups of the binding stage (hybrid allocator)
    offloaded_bytes: int = 0  # weights of the binding GPU kept in CPU memory (--cpu-offload-gb)
    feature_weights_bytes: int = 0  # of weights_bytes: LoRA slots and the drafter on the binding GPU


def kv_dtype_bytes(kv_cache_dtype: str, dtype: str) -> int:
    """Bytes per KV element (vllm-accounting.md section 2.6)."""
    if kv_cache_dtype == "auto":
        return DTYPE_BYTES[dtype]
    if kv_cache_dtype in FP8_KV:
        return 1
    return DTYPE_BYTES[kv_cache_dtype]


def rope_cache_bytes(arch: ModelArch, act_bytes: int) -> int:
    """Rotary cos/sin cache: max_position x rotary_dim x dtype, one shared copy per GPU.

    Linear/dynamic scaling builds the cache over max_position x factor
    (vllm/model_executor/layers/rotary_embedding: LinearScalingRotaryEmbedding); gemma-3 keeps a
    second, unscaled cache for its local (sliding) layers.
    """
    if arch.max_position_embeddings is None or not arch.rope:
        return 0  # Nemotron-H attention has no rotary embedding (vllm nemotron_h.py builds no get_rope)
    rot = arch.mla.qk_rope_head_dim if arch.mla is not None else int(arch.head_dim * arch.partial_rotary_factor)
    scaling = arch.rope_scaling or {}
    factor = float(scaling.get("factor", 1.0)) if scaling.get("rope_type") in ("linear", "dynamic") else 1.0
    cache = int(arch.max_position_embeddings * factor) * rot * act_bytes
    if arch.model_type.startswith("gemma3"):
        cache += arch.max_position_embeddings * rot * act_bytes
    return cache


def activation_peak_bytes(arch: ModelArch, inp: MemoryInputs, params: dict[str, Any], *, last_stage: bool) -> int:
    """Transient peak of vLLM's profile run: max(forward peak, sampler peak on the last stage).

    Forward: the MLP's intermediate activations for T tokens. A fused-MoE layer's caches hold T x top_k rows of
    the expert intermediate; the intermediate is split over TP unless expert parallelism gives each GPU whole
    experts. Sampler: the dummy batch min(T, S) x vocab, at the fused-kernel or the full-vocabulary-sort rate.
    """
    act = DTYPE_BYTES[inp.dtype]
    t = inp.max_num_batched_tokens
    mats = 3 if arch.gated_mlp else 2
    mlp = arch.intermediate_size / inp.tp
    if arch.moe is not None:
        moe = arch.moe.moe_intermediate_size * arch.moe.experts_per_token
        mlp = max(mlp, moe / (1 if inp.ep else inp.tp))
    forward = t * (mats * mlp + params["activation_hidden_factor"] * arch.hidden_size) * act
    sampler = 0.0
    if last_stage:
        logits = min(t, inp.max_num_seqs) * arch.vocab_size
        if inp.sampler_sort:
            sampler = params["activation_sampler_sort_bytes_per_logit"] * logits
        else:
            sampler = params["activation_base_gib"] * GiB + params["activation_sampler_bytes_per_logit"] * logits
    return int(max(forward, sampler) * inp.scales.get("activation_peak_bytes", 1.0))


def non_torch_bytes(inp: MemoryInputs, params: dict[str, Any]) -> int:
    """Non-torch growth per GPU. MoE data-parallel ranks (inp.dp > 1 only for MoE) hold the communicators of their
    TP x DP expert group (NCCL, all-to-all buffers): charged as a multi-GPU TP rank, the nearest case the
    calibration logs measure (none of them is a DP/EP launch)."""
    if inp.tp > 1 or inp.dp > 1:
        gib = params["non_torch_gib_tp_multi"]
    elif inp.pp > 1:
        gib = params["non_torch_gib_pp"]
    else:
        gib = params["non_torch_gib_tp1"]
    return int(gib * GiB * inp.scales.get("non_torch_bytes", 1.0))


def cuda_graph_bytes(layers: int, inp: MemoryInputs, params: dict[str, Any]) -> int:
    if inp.enforce_eager:
        return 0
    gib = params["cuda_graph_base_gib"] + params["cuda_graph_per_layer_gib"] * layers
    return int(gib * GiB * inp.scales.get("cuda_graph_bytes", 1.0))


_RW_CACHE: dict[tuple[Any, ...], tuple[ModelArch, Any]] = {}


def mxfp4_storage(params: dict[str, Any]) -> Mxfp4Storage:
    """How vLLM's MXFP4 MoE backend stores gpt-oss experts (planner/models/params.py Mxfp4Storage): the Hopper
    Triton layout, plus the swizzled-value pre-pad of vLLM 0.19 - 0.20 when the rule pack sets
    `mxfp4_value_pad_bytes` (64 for those versions; 0 or absent otherwise)."""
    return Mxfp4Storage(value_pad_bytes=int(params.get("mxfp4_value_pad_bytes", 0) or 0))


def _rank_weights_cached(arch: ModelArch, inp: MemoryInputs, stage: int, act: int, rope: int,
                         mxfp4: Mxfp4Storage | None = None) -> Any:
    """rank_weights, memoized: one plan asks for the same (layout, stage) for every KV dtype and settle pass.
    Keyed on the arch object's identity (ModelArch holds dicts, so it is not hashable); the entry keeps the
    object alive and is checked, so a reused id can never return another model's weights."""
    tower = inp.features.vision_tower
    key = (id(arch), inp.tp, inp.pp, stage, act, inp.linear_bytes_per_param, rope, inp.dp, inp.ep, mxfp4, tower)
    hit = _RW_CACHE.get(key)
    if hit is not None and hit[0] is arch:
        return hit[1]
    if len(_RW_CACHE) > 4096:
        _RW_CACHE.clear()
    rw = rank_weights(arch, tp=inp.tp, pp=inp.pp, stage=stage, act_bytes=act,
                      linear_bytes_per_param=inp.linear_bytes_per_param, rope_cache_bytes=rope, dp=inp.dp, ep=inp.ep,
                      mxfp4=mxfp4, include_vision=tower)
    _RW_CACHE[key] = (arch, rw)
    return rw


def budget_bytes(total: int, util: float, ceil: bool) -> int:
    """requested_memory: ceil(total x util) from 0.15, plain product before."""
    raw = total * util
    return math.ceil(raw) if ceil else int(raw)


def account(arch: ModelArch, inp: MemoryInputs, params: dict[str, Any]) -> MemoryResult:
    """Account memory for every PP stage and return the stage that bounds the KV cache."""
    act = DTYPE_BYTES[inp.dtype]
    kv_b = kv_dtype_bytes(inp.kv_cache_dtype, inp.dtype)
    budget = budget_bytes(inp.total_bytes, inp.gpu_memory_utilization, bool(params["budget_ceil"]))
    in_budget = bool(params["cuda_graph_in_budget"])
    rope = rope_cache_bytes(arch, act)
    mxfp4 = (mxfp4_storage(params) if arch.quant is not None and arch.quant.method.lower() == "mxfp4"
             and params["mxfp4_triton_layout"] else None)
    stages = []
    weights_total = 0
    hybrid = bool(params["hybrid_kv_manager"])
    t_profile = inp.max_num_batched_tokens if params["chunked_prefill"] else max(inp.max_num_batched_tokens,
                                                                                  inp.max_model_len)
    inp_profile = replace(inp, max_num_batched_tokens=t_profile)
    for stage in range(inp.pp):
        rw = _rank_weights_cached(arch, inp, stage, act, rope, mxfp4)
        model = int(rw.total_bytes * inp.scales.get("weights_bytes", 1.0))
        streamed = model if mxfp4 is None else int(
            _rank_weights_cached(arch, inp, stage, act, rope, None).total_bytes * inp.scales.get("weights_bytes", 1.0))
        off = min(model, inp.features.off(stage))  # in CPU memory: streamed over the host link, not from HBM
        weights = model - off + inp.features.added(stage)
        streamed = max(0, streamed - off)
        weights_total += weights * inp.tp * inp.dp
        activation = activation_peak_bytes(arch, inp_profile, params, last_stage=stage == inp.pp - 1)
        activation += mm_profile_bytes(activation, inp.features.mm) + inp.features.activation
        nt = non_torch_bytes(inp, params)
        cg = cuda_graph_bytes(rw.layers, inp, params)
        kv = budget - weights - activation - nt - (cg if in_budget else 0)
        last = stage == inp.pp - 1
        layout = kv_layout(arch, pp_layer_split(arch.num_layers, inp.pp)[stage], tp=inp.tp, kv_bytes=kv_b,
                           block_size=inp.block_size, hybrid_manager=hybrid, state_bytes=act,
                           extra_layers=inp.features.draft_kv_layers if last else 0,
                           extra_bytes_per_token=inp.features.draft_kv_bytes_per_token if last else 0)
        bytes_per_block = max(1, layout.bytes_per_block)
        blocks = max(0, kv) // bytes_per_block
        stages.append((blocks, weights, activation, nt, cg, kv, bytes_per_block, layout, streamed, off,
                       inp.features.added(stage)))
    binding = min(range(inp.pp), key=lambda s: (stages[s][0], -stages[s][1]))
    blocks, weights, activation, nt, cg, kv, bytes_per_block, layout, streamed, off, added = stages[binding]
    in_flight = int(params["kv_inflight_batches"]) * inp.max_num_batched_tokens
    state_blocks = inp.features.state_blocks or int(params["mamba_state_blocks"])

    def need(length: int) -> int:
        return blocks_per_request(layout, length, in_flight, state_blocks)

    tokens, max_conc = capacity(layout, blocks, inp.max_model_len, in_flight_tokens=in_flight,
                                state_blocks=state_blocks, group_aware=bool(params["kv_tokens_group_aware"]))
    max_fit_len = _longest_fitting(need, blocks - 1, layout.block_size)
    weights_fit = kv >= 2 * bytes_per_block
    fits = weights_fit and need(inp.max_model_len) <= blocks - 1
    baseline = int(params["context_baseline_gib"] * GiB)
    headroom = inp.total_bytes - budget - baseline - (0 if in_budget else cg)
    if inp.free_bytes is not None:
        headroom = min(headroom, inp.free_bytes - budget)
    low = params["oom_headroom_low_gib"] * GiB
    risk = "low" if headroom >= low else ("medium" if headroom >= 0 else "high")
    return MemoryResult(
        total_bytes=inp.total_bytes, budget_bytes=budget, weights_bytes=weights, activation_peak_bytes=activation,
        non_torch_bytes=nt, cuda_graph_bytes=cg, cuda_graph_in_budget=in_budget, kv_cache_bytes=max(0, kv),
        free_bytes=inp.free_bytes, bytes_per_block=bytes_per_block, num_blocks=blocks,
        kv_bytes_per_token=layout.kv_bytes_per_token, kv_cache_tokens=tokens, max_concurrency=max_conc,
        max_fitting_model_len=max_fit_len, weights_fit=weights_fit, fits=fits, headroom_bytes=headroom,
        oom_risk=risk, weights_total_bytes=weights_total, streamed_weights_bytes=streamed,
        kv_groups=len(layout.groups), offloaded_bytes=off, feature_weights_bytes=added,
    )


def _longest_fitting(need: Callable[[int], int], available_blocks: int, block_size: int) -> int:
    """Largest max_model_len (a multiple of the block size) whose one request fits `available_blocks`
    (vLLM's binary search in _estimate_max_model_len_from_groups)."""
    if available_blocks <= 0 or need(block_size) > available_blocks:
        return 0
    lo, hi = 1, 1
    while need(hi * block_size) <= available_blocks and hi < 1 << 40:
        lo, hi = hi, hi * 2
    while lo < hi - 1:
        mid = (lo + hi) // 2
        if need(mid * block_size) <= available_blocks:
            lo = mid
        else:
            hi = mid
    return lo * block_size
