"""Facts schema 1: the fact types rules can match, their fields and types, and normalisation.

Pure: no I/O. Every fact handed to an evaluator passes `normalise_fact`, which enforces the
schema and the engine's number limits (durable-rules rejects exponent literals such as 1e-05 and
compares NaN unpredictably; see shared/spec/durable-rules.md section 5):
  - bool, int, str fields keep their type; float fields are finite, |x| < 1e16 and values
    with 0 < |x| < 1e-4 are flushed to 0.0;
  - int fields must satisfy |x| < 1e16 (bytes are reported in int bytes up to 10 PB);
  - fields are never null: a fact omits what it does not know.

Identity: every fact gets `id = "<type>:<key>"` and `key = id` (joinable; `id` itself is
reserved by the engine).
"""

from __future__ import annotations

import math
from typing import Any

FACT_SCHEMA_VERSION = 1

# type -> field -> python type name ("int" | "float" | "bool" | "str"); "float" fields accept ints.
FACT_SCHEMA: dict[str, dict[str, str]] = {
    "gpu": {
        "name": "str",  # as nvidia-smi prints it, or the catalog's first name
        "catalog_id": "str",
        "vendor": "str",
        "family": "str",  # volta | turing | ampere | ada | hopper | blackwell | cdna3 | ...
        "memory_bytes": "int",  # CUDA-visible total per GPU
        "memory_gib": "float",
        "count": "int",  # GPUs of this model available to the plan
        "compute_capability": "float",  # 9.0 (AMD: the gfx target's major.minor as ROCm reports it, gfx942 -> 9.4)
        "gfx_arch": "str",  # AMD only: LLVM gfx target, e.g. gfx942 (vLLM's ROCm checks match on it); absent otherwise
        "fp8_supported": "bool",
        "fp4_supported": "bool",
        "interconnect": "str",  # nvlink | pcie | ...
        "hbm_bandwidth_gbps": "float",  # GB/s (1e9 B/s)
        "form_factor": "str",
        "free_gib": "float",  # free now on the probed GPU(s) (the smallest), GiB; absent when not probed
        "max_util_for_free": "float",  # largest utilization whose budget fits what vLLM will find free
        "free_below_default_budget": "bool",  # vLLM's default budget would not fit the free memory
        "key": "str",
    },
    "model": {
        "name": "str",
        "model_type": "str",
        "architecture": "str",  # config.json architectures[0], e.g. Qwen3MoeForCausalLM (vLLM's registry key)
        "params": "int",
        "active_params": "int",
        "is_moe": "bool",
        "attention": "str",  # full | sliding | chunked | mla | hybrid | ssm
        "max_position_embeddings": "int",
        "quantization": "str",  # effective quantization (checkpoint or --quantization), "none" when unquantized
        "weight_bits": "float",  # bits per quantized weight (8, 4), absent when unquantized
        "dtype": "str",  # bfloat16 | float16 | float32 (as the model will run)
        "num_layers": "int",
        "num_attention_heads": "int",
        "num_kv_heads": "int",
        "hidden_size": "int",
        "vocab_size": "int",
        "key": "str",
    },
    "cluster": {
        "gpus": "int",
        "nodes": "int",
        "gpus_per_node": "int",
        "interconnect": "str",
        "key": "str",
    },
    "request": {
        "mode": "str",  # latency | balanced | throughput
        "max_model_len": "int",  # requested context; 0 when the user did not ask (model default)
        "model_max_len": "int",  # the model's derived maximum length (vLLM rule)
        "concurrency": "int",
        "input_len": "int",
        "output_len": "int",
        "vllm_version": "str",
        "vllm_minor": "int",  # 33 for 0.33.x; for simple version gates
        # serving features as pinned (absent when not pinned; planner/features)
        "enable_lora": "bool",
        "max_loras": "int",
        "max_lora_rank": "int",
        "speculative_method": "str",  # --speculative-config's method as given (ngram, eagle3, mtp, deepseek_mtp, ...)
        "num_speculative_tokens": "int",
        "cpu_offload_gb": "float",
        "enable_prefix_caching": "bool",
        "prefix_hit_rate": "float",
        "key": "str",
    },
    "candidate": {
        "tensor_parallel_size": "int",
        "pipeline_parallel_size": "int",
        "data_parallel_size": "int",
        "gpus_used": "int",
        "quantization": "str",
        "kv_cache_dtype": "str",
        "fits": "bool",  # weights + overheads fit and at least one max-length sequence fits in KV
        "weights_fit": "bool",  # weights + overheads fit (KV may still be too small)
        "kv_pressure": "float",  # (concurrency x context tokens) / KV token capacity; >1 means queueing
        "weights_fraction": "float",  # weights per GPU / budget per GPU
        "kv_cache_gib": "float",
        "kv_cache_tokens": "int",
        "max_concurrency": "float",
        "max_fitting_model_len": "int",  # longest max_model_len whose one sequence fits the KV cache
        "is_min_fitting_tp": "bool",  # smallest TP (with PP=1) that fits, among auto-KV candidates
        "is_max_tp": "bool",  # the largest valid TP on one node, among auto-KV candidates
        "is_min_weights_fit_tp": "bool",  # smallest TP (PP=1) whose weights fit, when no layout fits fully
        "forbidden": "bool",  # a sizing rule dropped this candidate (it stays visible for reporting)
        "preference": "float",  # sum of the sizing stage's `prefer` scores for this candidate
        "is_preferred": "bool",  # fits, not forbidden, highest preference > 0 (ties: fewest GPUs)
        "is_min_tp": "bool",  # the smallest valid layout, flagged only when no layout's weights fit
        "is_baseline_kv": "bool",  # kv_cache_dtype auto (the model dtype)
        "is_selected_layout": "bool",  # the TP/PP/DP layout currently decided
        "is_selected": "bool",  # the layout and KV dtype currently decided
        "gpus_per_replica": "int",  # TP x PP
        "pp_replaceable_by_tp": "bool",  # PP > 1 and TP = TP x PP is valid for the model on one node
        "enable_expert_parallel": "bool",  # experts whole on each of the TP x DP ranks (MoE)
        "quant_shards_aligned": "bool",  # every TP/EP weight shard holds whole quantization blocks/groups
        "quant_shard_problem": "str",  # why not (empty when aligned), in vLLM's terms
        "context_len": "int",  # the max_model_len this candidate would serve (full, or clamped to its KV)
        "useful_context": "bool",  # context_len reaches the pack's min_useful_context_tokens (or the full length)
        "itl_ms": "float",  # predicted at the request's workload; absent when the weights do not fit
        "output_tokens_per_s": "float",  # all replicas
        "tokens_per_s_per_gpu": "float",  # per GPU doing work (idle replicas do not count)
        "is_best_for_mode": "bool",  # the mode's objective picks it among allowed candidates (see plan/settle)
        "is_closest": "bool",  # nothing fits: the layout with the smallest per-GPU need (one replica over the GPUs)
        "key": "str",
    },
    # `capacity`: one deployable answer to a load (GPU type x replica layout x KV dtype, sized in replicas)
    "option": {
        "catalog_id": "str",  # GPU catalog id, e.g. h100-sxm-80gb
        "gpu_name": "str",
        "vendor": "str",
        "family": "str",
        "gpus_per_replica": "int",  # TP x PP (x DP for a MoE engine with in-engine data parallelism)
        "replicas": "int",
        "total_gpus": "int",
        "nodes_per_replica": "int",
        "tensor_parallel_size": "int",
        "pipeline_parallel_size": "int",
        "data_parallel_size": "int",
        "enable_expert_parallel": "bool",
        "kv_cache_dtype": "str",
        "quantization": "str",  # "none" when unquantized
        "meets_slo": "str",  # yes | at-risk | no
        "max_rate": "float",  # requests/s one replica sustains
        "utilization": "float",  # offered rate per replica / max_rate
        "ttft_ms": "float",  # expected, at the SLO percentile and the offered load
        "itl_ms": "float",
        "output_tokens_per_s_per_gpu": "float",
        "tokens_per_s_per_user": "float",
        "pareto": "bool",
        "priced": "bool",  # the packs' gpu_hourly_price_usd has this GPU
        "cost_per_hour": "float",  # absent when not priced
        "cost_per_million_output_tokens": "float",
        "forbidden": "bool",  # a sizing rule dropped this option
        "preference": "float",  # sum of the sizing stage's `prefer` scores
        "is_cheapest_meeting_slo": "bool",  # priced, meets the SLOs (yes), lowest cost/hour among allowed options
        "is_fewest_gpus_meeting_slo": "bool",  # meets the SLOs (yes), fewest GPUs among allowed options
        "is_preferred_meeting_slo": "bool",  # meets the SLOs, highest preference >= preference_decides_option
        "key": "str",
    },
}

_INT_LIMIT = 10**16
_FLOAT_FLUSH = 1e-4


class FactError(ValueError):
    """A fact does not match the facts schema (a bug in a calculator, or a bad test file)."""


def fact_id(fact_type: str, key: str) -> str:
    """Stable identity of a fact."""
    return f"{fact_type}:{key}"


def _norm_value(fact_type: str, name: str, kind: str, value: Any) -> Any:
    where = f"{fact_type}.{name}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise FactError(f"{where}: expected a boolean, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise FactError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FactError(f"{where}: expected a number, got {value!r}")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise FactError(f"{where}: expected an integer, got {value!r}")
            value = int(value)
        if abs(value) >= _INT_LIMIT:
            raise FactError(f"{where}: {value} is outside the engine's exact range (|x| < 1e16)")
        return value
    # float
    value = float(value)
    if not math.isfinite(value):
        raise FactError(f"{where}: expected a finite number, got {value!r}")
    if abs(value) >= _INT_LIMIT:
        raise FactError(f"{where}: {value} is outside the engine's range (|x| < 1e16)")
    if 0 < abs(value) < _FLOAT_FLUSH:
        return 0.0
    return value


def normalise_fact(fact_type: str, key: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate `fields` against the schema and return the engine-ready fact dict.

    Unknown fields are an error; None values are dropped (a fact omits what it does not know).
    """
    if fact_type not in FACT_SCHEMA:
        raise FactError(f"unknown fact type {fact_type!r}")
    schema = FACT_SCHEMA[fact_type]
    out: dict[str, Any] = {"type": fact_type, "id": fact_id(fact_type, key), "key": fact_id(fact_type, key)}
    for name, value in fields.items():
        if name in ("type", "id", "key"):
            continue
        if name not in schema:
            raise FactError(f"{fact_type}.{name}: unknown field (facts schema {FACT_SCHEMA_VERSION})")
        if value is None:
            continue
        out[name] = _norm_value(fact_type, name, schema[name], value)
    return out


def field_kind(fact_type: str, prop: str) -> str:
    """The schema type of a fact field ("int" | "float" | "bool" | "str")."""
    if prop == "key":
        return "str"
    return FACT_SCHEMA[fact_type][prop]
