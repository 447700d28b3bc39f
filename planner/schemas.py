"""The pydantic contract: what `plan` takes (PlanRequest) and prints with --json (PlanResponse).

Field names are a stable contract (ARCHITECTURE.md "CLI and JSON contract"): extend, never rename.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["latency", "balanced", "throughput"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pinned(_Model):
    """Settings the user fixed with vLLM's spelling; the planner evaluates them and recommends the rest."""

    tensor_parallel_size: int | None = Field(default=None, ge=1, description="--tensor-parallel-size / --tp")
    pipeline_parallel_size: int | None = Field(default=None, ge=1, description="--pipeline-parallel-size / --pp")
    data_parallel_size: int | None = Field(default=None, ge=1, description="--data-parallel-size / --dp")
    dtype: str | None = Field(default=None, description="--dtype")
    quantization: str | None = Field(default=None, description="--quantization")
    kv_cache_dtype: str | None = Field(default=None, description="--kv-cache-dtype")
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False,
                                                 description="--gpu-memory-utilization")
    max_model_len: int | None = Field(default=None, ge=1, description="--max-model-len")
    max_num_seqs: int | None = Field(default=None, ge=1, description="--max-num-seqs")
    max_num_batched_tokens: int | None = Field(default=None, ge=1, description="--max-num-batched-tokens")
    enforce_eager: bool | None = Field(default=None, description="--enforce-eager")
    enable_expert_parallel: bool | None = Field(default=None, description="--enable-expert-parallel (MoE)")
    # Serving features (issue 19; planner/features): vLLM's flags, sized the way that version sizes them.
    enable_lora: bool | None = Field(default=None, description="--enable-lora (multi-LoRA serving)")
    max_loras: int | None = Field(default=None, ge=1, description="--max-loras: adapters in one batch (GPU slots)")
    max_lora_rank: int | None = Field(default=None, ge=1, description="--max-lora-rank")
    max_cpu_loras: int | None = Field(default=None, ge=1, description="--max-cpu-loras: adapters cached in CPU memory")
    lora_dtype: str | None = Field(default=None, description="--lora-dtype (auto, float16, bfloat16)")
    speculative_config: dict[str, Any] | None = Field(
        default=None, description="--speculative-config JSON: method, num_speculative_tokens, model (a draft or "
                                  "EAGLE head given as a local directory or catalog id)")
    cpu_offload_gb: float | None = Field(default=None, ge=0, le=65536, allow_inf_nan=False,
                                         description="--cpu-offload-gb: GiB of weights per GPU kept in CPU memory")
    enable_prefix_caching: bool | None = Field(default=None,
                                               description="--enable-prefix-caching / --no-enable-prefix-caching")
    limit_mm_per_prompt: dict[str, Any] | None = Field(
        default=None, description="--limit-mm-per-prompt JSON: items per modality per prompt, e.g. {\"image\": 2}")
    sampler: Literal["fused", "sort"] | None = Field(
        default=None, description="How the target vLLM's top-p/top-k sampler runs, which sizes the startup sampler "
                                  "peak: 'sort' = PyTorch's full-vocabulary sort (V0; V1 without FlashInfer, e.g. a "
                                  "pip install of 0.10.x), 'fused' = FlashInfer's or Triton's kernels")


class PlanRequest(_Model):
    """Everything a plan depends on besides the rule packs."""

    model: str = Field(description="Hub id, bundled catalog id or local directory.")
    gpu: str | None = Field(default=None, min_length=1, description="GPU name, alias or catalog id (--gpu).")
    vram_gib: float | None = Field(default=None, gt=0, le=4096, allow_inf_nan=False,
                                   description="Override/declare GPU memory in GiB.")
    from_file: str | list[str] | None = Field(
        default=None,
        description="Saved nvidia-smi, rocm-smi or amd-smi capture(s) to plan for, e.g. a table plus `topo -m`.")
    ignore_used: bool = Field(default=False, description="Plan for empty GPUs, ignoring memory others hold now.")
    gpus: int | None = Field(default=None, ge=1, le=4096, description="Number of GPUs (default: one node's worth).")
    nodes: int = Field(default=1, ge=1, le=512, description="Number of nodes.")
    gpus_per_node: int | None = Field(default=None, ge=1, le=64, description="GPUs per node.")
    concurrency: int = Field(default=1, ge=1, le=1_000_000, description="Concurrent requests to serve.")
    input_len: int = Field(default=1024, ge=1, le=100_000_000, description="Prompt tokens per request.")
    output_len: int = Field(default=256, ge=1, le=100_000_000, description="Generated tokens per request.")
    mode: Mode = Field(default="balanced", description="Optimisation objective.")
    vllm_version: str | None = Field(default=None, description="Target vLLM version (default: newest known).")
    pinned: Pinned = Field(default_factory=Pinned)
    rules: list[str] = Field(default_factory=list, description="Site rule packs (--rules).")
    prefix_hit_rate: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False,
                                   description="Share of prompt tokens found in the prefix cache (workload).")
    spec_acceptance_rate: float | None = Field(
        default=None, gt=0, lt=1, allow_inf_nan=False,
        description="Per-token acceptance rate of speculative tokens (default: the rule pack's, per method).")


class Range(_Model):
    low: float
    expected: float
    high: float


class Workload(_Model):
    concurrency: int
    input_len: int
    output_len: int


class Performance(_Model):
    workload: Workload
    itl_ms: Range
    ttft_ms: Range
    decode_tokens_per_s_per_request: Range
    output_tokens_per_s_total: Range
    prefill_tokens_per_s: Range
    effective_concurrency: int = Field(description="Concurrency vLLM actually runs (KV and max_num_seqs bound).")
    assumptions: list[str] = Field(default_factory=list)


class PerGpuMemory(_Model):
    total_bytes: int
    budget_bytes: int
    weights_bytes: int
    activation_peak_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_cache_bytes: int
    free_bytes: int | None


class Memory(_Model):
    per_gpu: PerGpuMemory
    kv_cache_tokens: int
    max_concurrency: float
    headroom_bytes: int
    oom_risk: Literal["low", "medium", "high"]
    cuda_graph_in_budget: bool
    bytes_per_block: int
    num_blocks: int
    kv_bytes_per_token: int
    weights_total_bytes: int
    sampler: Literal["fused", "sort"] = Field(
        description="Sampler whose startup warm-up the activation peak was sized with (--sampler, else the "
                    "target version's default).")


class VLLMConfig(_Model):
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    enable_expert_parallel: bool = False
    quantization: str | None
    kv_cache_dtype: str
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    enforce_eager: bool
    block_size: int
    dtype: str


class DecisionOut(_Model):
    value: Any
    by: str
    reason: str
    superseded: list[dict[str, Any]] = Field(default_factory=list)


class PlanWarning(_Model):
    code: str
    message: str
    rule: str | None = None


class ModelSummary(_Model):
    name: str
    source: str
    architecture: str
    params: int
    active_params: int
    dtype: str
    quantization: str | None
    max_position_embeddings: int | None
    model_max_len: int
    attention: str


class DeviceOut(_Model):
    index: int
    name: str
    mig_profile: str | None = None
    memory_total_bytes: int
    free_bytes: int | None
    processes: list[str] = Field(default_factory=list)
    selected: bool
    healthy: bool = True  # False when the probe shows the GPU failing (ERR!, lost, memory repair pending)
    left_out: list[str] = Field(default_factory=list)  # why the plan cannot use it (health, MIG without instances)


class HardwareSummary(_Model):
    gpu: str
    catalog_id: str | None
    vendor: str | None = Field(default=None, description="GPU vendor from the catalog (nvidia | amd); null when the "
                               "GPU is not in the catalog. Deployment files follow it (image, devices, resources).")
    gpu_count: int
    nodes: int
    gpus_per_node: int
    memory_bytes_per_gpu: int
    interconnect: str
    probed: bool
    devices: list[DeviceOut] = Field(default_factory=list, description="Probed devices (GPUs or MIG slices).")
    visible_devices: str | None = Field(default=None, description="CUDA_VISIBLE_DEVICES the plan needs, if any.")
    tp_group: list[int] = Field(default_factory=list, description="GPU indices of the first tensor-parallel group.")
    notes: list[str] = Field(default_factory=list, description="Why these devices (MIG, mixed GPUs, topology).")


class Alternative(_Model):
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    enable_expert_parallel: bool = False
    kv_cache_dtype: str
    fits: bool
    forbidden: list[str]
    preference: float = 0.0
    preferred_by: list[str] = Field(default_factory=list)
    kv_cache_tokens: int
    max_concurrency: float
    weights_bytes: int
    itl_ms: float | None = None
    output_tokens_per_s_total: float | None = None
    # issue 6: what differs from the chosen configuration, and its speed at the same workload
    change: str = ""
    gpus: int = 0
    quantization: str | None = None
    max_model_len: int = 0
    ttft_ms: float | None = None


class Fix(_Model):
    """One single change that makes an infeasible plan fit, re-sized with the same accounting (issue 6)."""

    change: str
    flags: str
    fits: bool
    kv_cache_tokens: int
    max_concurrency: float
    weights_bytes: int
    kv_cache_bytes: int
    detail: str


class Dropped(_Model):
    """A candidate a sizing rule removed, with every reason."""

    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    enable_expert_parallel: bool = False
    kv_cache_dtype: str
    reasons: list[str]


class LaunchOut(_Model):
    """How the layout is launched: one node, or a Ray cluster of `nodes` per group."""

    nodes: int = Field(description="Nodes (pods) in one group; 1 = a single-node deployment.")
    gpus_per_pod: int = Field(description="GPUs each node of a group uses.")
    groups: int = Field(description="Independent copies of the model (LeaderWorkerSet replicas).")
    data_parallel_in_engine: int = Field(description="--data-parallel-size given to vllm serve.")
    data_parallel_local: int | None = Field(description="--data-parallel-size-local (Ray DP across nodes).")
    executor: str | None = Field(description="--distributed-executor-backend, when a replica spans nodes.")
    dp_backend: str | None = Field(description="--data-parallel-backend, when data parallelism spans nodes.")
    multi_node: bool
    notes: list[str] = Field(default_factory=list)


class PlanResponse(_Model):
    """The plan, as printed by `plan --json`."""

    planner_version: str
    plan_id: str
    vllm_version: str
    feasible: bool
    infeasible_reason: str | None = None
    model: ModelSummary
    hardware: HardwareSummary
    config: VLLMConfig
    memory: Memory
    performance: Performance
    decisions: dict[str, DecisionOut]
    audit: dict[str, Any]
    warnings: list[PlanWarning]
    alternatives: list[Alternative]
    features: dict[str, Any] = Field(default_factory=dict, description="Serving features (LoRA, speculative "
                                     "decoding, CPU offload, prefix caching, multimodal): what each costs, per GPU.")
    fixes: list[Fix] = Field(default_factory=list, description="When infeasible: single changes that make it fit.")
    dropped: list[Dropped] = Field(default_factory=list, description="Candidates removed by sizing rules.")
    launch: LaunchOut | None = Field(default=None, description="Deployment shape (nodes, groups, Ray).")
    serve_command: str
