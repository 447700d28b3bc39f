"""CPU weight offload (`--cpu-offload-gb X`, issue 19): what vLLM moves off one GPU, and what it costs per step.

Pure: no I/O. The host-link bandwidth is a datasheet figure (gpu_catalog `host_link`); how much of it a transfer
reaches is a measured efficiency, a pack param (`offload_h2d_efficiency_<link>`).

What vLLM does (vllm/model_executor/models/utils.py `maybe_offload_to_cpu` up to 0.16; the UVA offloader
vllm/model_executor/offloader/uva.py `UVAOffloader._maybe_offload_to_cpu` from 0.17, where `--cpu-offload-gb`
fills `OffloadConfig.uva` and `offload_backend=auto` picks it):

* Budget `int(cpu_offload_gb * 1024**3)` bytes PER GPU (v1/worker/gpu_model_runner.py `set_cpu_offload_max_bytes`,
  offloader/base.py `create_offloader`). Each process (TP rank, PP stage) counts its own bytes.
* Eligible: only the decoder layers `make_layers` builds for this PP stage (each layer module is handed to the
  offloader as it is constructed). Embeddings, lm_head, the final norm -- and, before 0.29, vision towers -- are
  never offloaded. From 0.29 `SupportsMultiModal._mark_tower_model` also hands the towers to the UVA offloader
  (`supports_tower_offload`); the common VLMs (llava, qwen2.5/3-vl, gemma3, mistral3, llama4) build the tower
  before the language model, so the tower is offered first.
* Granularity: whole parameters, in registration order, layer after layer; the check `offloaded >= budget` runs
  BEFORE each parameter, so the parameter that crosses the budget goes too (the last one overshoots) and the
  rest stay. A fused parameter (qkv_proj, gate_up_proj, a FusedMoE w13/w2 over all local experts) moves whole.
* Every forward reads the offloaded bytes over the host link: V0 (0.6.x) copies the layer's state to the GPU
  (`functional_call` on `.to(device, non_blocking=True)`) before it runs; V1 (0.8.5+) maps pinned host memory into
  the GPU address space (UVA, `get_accelerator_view_from_cpu_tensor`) and kernels read it in place. Prefill and
  decode both pay it; nothing is cached on the GPU between steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from packaging.version import Version

from planner.models.arch import ModelArch
from planner.models.params import (
    ATTENTION,
    EXPERT,
    EXPERT_BIAS,
    EXPERTS,
    KV,
    MLP,
    ROUTER,
    SHARED_EXPERTS,
    TP,
    VISION,
    Tensor,
    is_quantized,
    layer_classes,
    layer_tensors,
    pp_layer_split,
    vision_params,
)
from planner.units import GiB, cdiv

# vllm/config/vllm.py DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES: MoE architectures that run on Model Runner V2 by
# default in 0.25-0.27 (dense, non-hybrid models do anyway). 0.26/0.27 add Inkling, Longcat-Flash-Ngram, Kimi-K3.
_V2_MOE_ARCHS = frozenset({"DeepseekV2ForCausalLM", "Qwen2MoeForCausalLM", "GraniteMoeForCausalLM",
                           "InklingForCausalLM", "InklingForConditionalGeneration",
                           "LongcatFlashNgramForCausalLM", "KimiK3ForConditionalGeneration"})
# Checkpoint formats whose process_weights_after_loading repacks the weights into new device tensors (Marlin).
_REPACKED = ("gptq", "gptq_marlin", "awq", "awq_marlin", "compressed-tensors", "auto-round")
_LINK_KEYS = ("pcie3", "pcie4", "pcie5", "pcie6", "nvlink_c2c")


def _v(version: str) -> Version:
    return Version(version.lstrip("v"))


def budget_bytes(cpu_offload_gb: float) -> int:
    """The per-GPU byte budget vLLM derives from `--cpu-offload-gb`: int(X * 1024**3)."""
    return int(cpu_offload_gb * GiB)


def model_runner_v2_ignores_offload(arch: ModelArch, version: str) -> bool:
    """Whether this version runs the model on Model Runner V2 by default, whose runner never installs the
    offloader: `--cpu-offload-gb` is accepted, logged in the non-default args, and nothing moves.

    vllm/v1/worker/gpu/model_runner.py has no `set_offloader` call in 0.22.0-0.27.x (vllm#56283; added by
    vllm#51413, first released in 0.28.0). Default selection (`VllmConfig.use_v2_model_runner`,
    `_is_default_v2_model_runner_model`): 0.22 Qwen3ForCausalLM, 0.23 Llama/Mistral/Qwen3ForCausalLM, both only
    unquantized dense; 0.24 those plus three MoE architectures; 0.25-0.27 every generative model that is neither
    MoE (bar the listed MoE architectures) nor hybrid nor attention-free. VLLM_USE_V2_MODEL_RUNNER=0 and the
    features V2 lacks (prefill context parallelism, some speculative methods, ...) fall back to the V1 runner,
    which does offload; the planner assumes the default.
    """
    v = _v(version)
    if not Version("0.22") <= v < Version("0.28"):
        return False
    archs = set(arch.architectures)
    quantized = arch.quant is not None
    if v < Version("0.23"):
        return "Qwen3ForCausalLM" in archs and not arch.is_moe and not quantized
    if v < Version("0.24"):
        return bool(archs & {"LlamaForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM"}) and not arch.is_moe \
            and not quantized
    if v < Version("0.25"):
        return bool(archs & {"Qwen3ForCausalLM", "DeepseekV2ForCausalLM", "Qwen2MoeForCausalLM",
                             "GraniteMoeForCausalLM", "LlamaForCausalLM", "MistralForCausalLM"})
    listed = bool(archs & _V2_MOE_ARCHS)
    hybrid = arch.ssm is not None
    if hybrid and (v < Version("0.27") or not listed):
        return False
    return listed or not arch.is_moe


def _param_bytes(arch: ModelArch, t: Tensor, layer: int, *, tp: int, kv_div: int, expert_group: int, ep: bool,
                 act_bytes: int, linear_bytes_per_param: float) -> float:
    """Bytes one GPU holds of tensor `t` (sharded and stored as planner.models.params.rank_weights does)."""
    if t.shard == TP:
        share = t.numel / tp
    elif t.shard == KV:
        share = t.numel / kv_div
    elif t.shard == EXPERT:
        share = t.rows * t.cols * cdiv(t.count, expert_group) if ep else t.numel / expert_group
    else:
        share = float(t.numel)
    if t.fp32:
        return share * 4
    if t.group != EXPERT_BIAS and is_quantized(arch.quant, t.group, layer):
        return share * linear_bytes_per_param
    return share * act_bytes


def _vllm_params(arch: ModelArch, layer: int) -> Iterator[tuple[Tensor, ...]]:
    """The layer's tensors grouped into vLLM's parameters, in registration order: q and k/v fuse into qkv_proj; a
    gated MLP (or expert set) is gate_up_proj + down_proj (FusedMoE w13_weight + w2_weight), an ungated one
    up + down (vllm/model_executor/layers/linear.py QKVParallelLinear, MergedColumnParallelLinear;
    layers/fused_moe/layer.py FusedMoE.create_weights)."""
    tensors = layer_tensors(arch, layer)
    first_expert = next((k for k, t in enumerate(tensors) if t.group == EXPERTS), None)
    if first_expert is not None:
        # MoE blocks build the router (gate) first, then the shared expert(s), then FusedMoE (mixtral.py MixtralMoE,
        # qwen2_moe/qwen3_moe SparseMoeBlock, deepseek_v2.py DeepseekV2MoE, gpt_oss.py MLPBlock, llama4.py)
        head, tail = tensors[:first_expert], tensors[first_expert:]
        early = [t for t in tail if t.group in (ROUTER, SHARED_EXPERTS)]
        tensors = head + early + [t for t in tail if t.group not in (ROUTER, SHARED_EXPERTS)]
    mats = 3 if arch.gated_mlp else 2
    i = 0
    while i < len(tensors):
        t = tensors[i]
        nxt = tensors[i + 1] if i + 1 < len(tensors) else None
        if t.group == ATTENTION and t.shard == TP and nxt is not None and nxt.group == ATTENTION and nxt.shard == KV:
            yield (t, nxt)  # qkv_proj
            i += 2
            continue
        if t.group in (MLP, SHARED_EXPERTS, EXPERTS) and t.rows > 0 and t.rows % mats == 0:
            inter = t.rows // mats
            yield (Tensor(t.group, t.shard, (mats - 1) * inter, t.cols, t.count, t.fp32),)  # gate_up / w13
            yield (Tensor(t.group, t.shard, inter, t.cols, t.count, t.fp32),)  # down / w2 (same element count)
            i += 1
            continue
        yield (t,)
        i += 1


def _layer_params(arch: ModelArch, layer: int, **kw: Any) -> list[float]:
    """Per-GPU bytes of each vLLM parameter of decoder layer `layer`, in the order the offloader sees them."""
    return [sum(_param_bytes(arch, t, layer, **kw) for t in group) for group in _vllm_params(arch, layer)]


def offloaded_bytes(arch: ModelArch, *, cpu_offload_gb: float, tp: int, pp: int, stage: int, act_bytes: int,
                    linear_bytes_per_param: float, version: str, dp: int = 1, ep: bool = False,
                    include_vision: bool = True) -> int:
    """Bytes vLLM moves off ONE GPU of PP stage `stage` for `--cpu-offload-gb` (0 when it offloads nothing).

    Whole parameters, tower first (0.29+, multimodal), then the stage's decoder layers in order, until the running
    total reaches the budget (the crossing parameter included), or everything eligible is gone. Sizes are the
    per-GPU shards, stored as `rank_weights` stores them (`act_bytes`: activation dtype size;
    `linear_bytes_per_param`: the quantized linear storage). `include_vision=False` when the tower is not built
    (every modality limited to 0) or the model has none.
    """
    budget = budget_bytes(cpu_offload_gb)
    if budget <= 0 or model_runner_v2_ignores_offload(arch, version):
        return 0
    if tp < 1 or pp < 1 or dp < 1 or not 0 <= stage < pp:
        raise ValueError(f"offloaded_bytes: bad layout tp={tp} pp={pp} dp={dp} stage={stage}")
    done = 0.0
    if include_vision and _v(version) >= Version("0.29"):
        vp = vision_params(arch) / tp
        tower = vp * (linear_bytes_per_param if is_quantized(arch.quant, VISION) else act_bytes)
        if tower > 0:
            # The tower's own parameter list is not modelled: offloading stops within it at the budget (the
            # overshoot of one tower parameter, a few MiB, is left out).
            done = min(tower, float(budget))
            if done >= budget:
                return int(done)
    kw: dict[str, Any] = {"tp": tp, "kv_div": min(tp, arch.num_kv_heads) if arch.num_kv_heads > 0 else tp,
                          "expert_group": tp * dp, "ep": ep, "act_bytes": act_bytes,
                          "linear_bytes_per_param": linear_bytes_per_param}
    layers = pp_layer_split(arch.num_layers, pp)[stage]
    eligible = sum(sum(_layer_params(arch, rep, **kw)) * n for rep, n in layer_classes(arch, layers))
    if done + eligible <= budget:
        return int(done + eligible)
    for layer in layers:  # stops within budget / layer bytes layers
        for b in _layer_params(arch, layer, **kw):
            if done >= budget:
                return int(done)
            done += b
    return int(done)


def eligible_bytes(arch: ModelArch, *, tp: int, pp: int, stage: int, act_bytes: int, linear_bytes_per_param: float,
                   version: str, dp: int = 1, ep: bool = False, include_vision: bool = True) -> int:
    """Everything vLLM could offload from one GPU of `stage` (what an unbounded `--cpu-offload-gb` moves)."""
    return offloaded_bytes(arch, cpu_offload_gb=float(2**40), tp=tp, pp=pp, stage=stage, act_bytes=act_bytes,
                           linear_bytes_per_param=linear_bytes_per_param, version=version, dp=dp, ep=ep,
                           include_vision=include_vision)


def host_link_key(link_type: str, pcie_gen: int | None) -> str:
    """The efficiency-param suffix of a catalog host link: pcie3..pcie6 or nvlink_c2c (Gen1/2 count as Gen3)."""
    if link_type == "nvlink-c2c":
        return "nvlink_c2c"
    if link_type != "pcie" or pcie_gen is None:
        raise ValueError(f"unknown host link {link_type!r} (gen {pcie_gen})")
    return f"pcie{min(6, max(3, pcie_gen))}"


def offload_step_ms(offloaded_bytes: int, host_link_bytes_per_s: float, params: dict[str, Any], *,
                    link: str = "pcie4") -> float:
    """Milliseconds every forward (decode step or prefill chunk) spends reading the offloaded weights from host
    memory: offloaded_bytes / (host-link bandwidth per direction x measured efficiency of `link`).

    vLLM streams them on every forward and keeps nothing on the GPU (UVA kernels read pinned host memory in
    place; V0 copied each layer's state before running it), so the cost adds to the step's own time. A GEMM with
    many row tiles may fetch a weight tile more than once over the link (prefill); that re-read is not modelled.
    """
    if offloaded_bytes <= 0:
        return 0.0
    if host_link_bytes_per_s <= 0 or not math.isfinite(host_link_bytes_per_s):
        raise ValueError(f"host link bandwidth must be positive, got {host_link_bytes_per_s}")
    if link not in _LINK_KEYS:
        raise ValueError(f"unknown host link kind {link!r}; one of {', '.join(_LINK_KEYS)}")
    eff = float(params[f"offload_h2d_efficiency_{link}"])
    return offloaded_bytes / (host_link_bytes_per_s * eff) * 1000.0


def offload_problems(arch: ModelArch, *, cpu_offload_gb: float, version: str, offloaded: int, eligible: int,
                     quantization: str | None = None, kv_cache_groups: int = 1, block_size_changed: bool = False,
                     unified_memory: bool = False) -> list[str]:
    """What vLLM refuses ("error: ..." first) or what surprises a user ("warning: ...") for this offload request.

    `offloaded`/`eligible`: `offloaded_bytes` and `eligible_bytes` of the binding GPU; `quantization`: the
    checkpoint's or `--quantization` method; `kv_cache_groups`: KV-cache groups of the model (hybrid allocator:
    sliding + full, Mamba + attention); `block_size_changed`: the attention backend or a hybrid model forces a
    block size other than the configured one; `unified_memory`: host memory is the GPU's (GB10).
    """
    out: list[str] = []
    v = _v(version)
    if cpu_offload_gb < 0:
        # vllm/config/cache.py _verify_args (<= 0.14), Field(ge=0) on cpu_offload_gb (0.15+)
        return [f"error: --cpu-offload-gb must be non-negative, got {cpu_offload_gb} (vLLM: 'CPU offload space "
                f"must be non-negative')"]
    if cpu_offload_gb == 0:
        return []
    if Version("0.9.1") <= v < Version("0.20") and (kv_cache_groups > 1 or block_size_changed):
        # v1/worker/gpu_model_runner.py may_reinitialize_input_batch (vllm PR 18298), removed in 0.20.0
        out.append(f"error: vLLM {version} stops at startup with 'Cannot re-initialize the input batch when CPU "
                   f"weight offloading is enabled': this model's KV cache has {kv_cache_groups} group(s)"
                   f"{' and a non-default block size' if block_size_changed else ''} (fixed in 0.20.0)")
    if model_runner_v2_ignores_offload(arch, version):
        out.append(f"warning: vLLM {version} runs {arch.name} on Model Runner V2, which never installs the "
                   f"offloader: --cpu-offload-gb is accepted and ignored, nothing is offloaded (vllm#56283; fixed "
                   f"in 0.28.0). Set VLLM_USE_V2_MODEL_RUNNER=0 to offload")
        return out
    if offloaded < budget_bytes(cpu_offload_gb) and offloaded == eligible:
        out.append(f"warning: only {eligible / GiB:.2f} GiB per GPU can be offloaded (decoder layers"
                   f"{' and vision tower' if v >= Version('0.29') and arch.is_multimodal else ''}; embeddings and "
                   f"lm_head always stay on the GPU); --cpu-offload-gb {cpu_offload_gb:g} asks for more")
    q = (quantization or "").lower()
    if q and Version("0.8.5") <= v < Version("0.17") and q in _REPACKED:
        # model_loader/utils.py device_loading_context re-offloads replaced UVA parameters only from 0.17.0
        out.append(f"warning: {quantization} weights are repacked after loading into new GPU tensors, and vLLM "
                   f"{version} does not move offloaded ones back to the host (0.17+ does): part of the offload "
                   f"may stay on the GPU")
    if q in ("bitsandbytes", "gguf") and v < Version("0.8.5"):
        out.append(f"warning: {quantization} with --cpu-offload-gb was reported to fail at startup on the V0 "
                   f"engine (vllm#8757)")
    if unified_memory:
        out.append("warning: this GPU shares one memory pool with the CPU: offloaded weights leave vLLM's "
                   "budget but occupy the same physical memory, and are read at host-link speed")
    return out
