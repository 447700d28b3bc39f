"""The `vllm serve` command for a plan, valid for the target vLLM version.

Pure: no I/O. Flags use vLLM's spelling, and every flag and value is checked against what the
target version's parser accepts (flags.py), so a plan for 0.8.5 never carries a 0.11-only flag.
Settings equal to vLLM's default for the target version are left out, except max_model_len (the
plan's memory depends on it). The checkpoint's own quantization is detected by vLLM and not
repeated; only a pinned quantization is passed.
"""

from __future__ import annotations

import shlex
from typing import Any

from planner.artifacts.accelerators import AMD, HIP_VISIBLE
from planner.artifacts.flags import check_flag, flag_table, value_format
from planner.artifacts.launch import Launch
from planner.schemas import Pinned


def serve_args(config: dict[str, Any], params: dict[str, Any], *, pinned: Pinned, launch: Launch,
               version: str) -> list[str]:
    """Flags (after the model) for `vllm serve`, for one launch of the plan."""
    args: list[str] = []

    def add(flag: str, value: Any = None, *, why: str = "") -> None:
        check_flag(flag, value, version, why=why)
        args.extend([flag] if value is None else [flag, str(value)])

    if config["tensor_parallel_size"] > 1:
        add("--tensor-parallel-size", config["tensor_parallel_size"])
    if config["pipeline_parallel_size"] > 1:
        add("--pipeline-parallel-size", config["pipeline_parallel_size"])
    if launch.data_parallel_in_engine > 1:
        add("--data-parallel-size", launch.data_parallel_in_engine)
    if launch.data_parallel_local is not None:
        add("--data-parallel-size-local", launch.data_parallel_local, why="data parallelism across nodes")
    if launch.dp_backend:
        add("--data-parallel-backend", launch.dp_backend, why="data parallelism across nodes")
    if config.get("enable_expert_parallel") or pinned.enable_expert_parallel:
        add("--enable-expert-parallel")
    if launch.executor:
        add("--distributed-executor-backend", launch.executor, why="a replica spans nodes")
    if pinned.dtype and pinned.dtype != "auto":
        add("--dtype", pinned.dtype)
    if pinned.quantization:
        add("--quantization", config["quantization"])
    add("--max-model-len", config["max_model_len"])
    if abs(config["gpu_memory_utilization"] - float(params["default_gpu_memory_utilization"])) > 1e-9:
        add("--gpu-memory-utilization", f"{config['gpu_memory_utilization']:g}")
    if config["kv_cache_dtype"] != "auto":
        add("--kv-cache-dtype", config["kv_cache_dtype"])
    if config["max_num_seqs"] != int(params["default_max_num_seqs"]):
        add("--max-num-seqs", config["max_num_seqs"])
    if config["max_num_batched_tokens"] != int(params["default_max_num_batched_tokens"]):
        add("--max-num-batched-tokens", config["max_num_batched_tokens"])
    if config["block_size"] != int(params["default_block_size"]):
        add("--block-size", config["block_size"])
    if config["enforce_eager"]:
        add("--enforce-eager")
    args.extend(feature_args(pinned, version))
    if int(params["deploy_port"]) != int(flag_table()["port_default"]):
        add("--port", int(params["deploy_port"]))
    return args


def feature_args(pinned: Pinned, version: str) -> list[str]:
    """The serving-feature flags exactly as pinned (LoRA, speculation, offload, prefix caching, multimodal limits),
    each checked against what `version`'s parser accepts. JSON values are written compactly, as one shell word."""
    import json

    args: list[str] = []

    def add(flag: str, value: Any = None) -> None:
        check_flag(flag, value, version)
        args.extend([flag] if value is None else [flag, str(value)])

    if pinned.enable_lora:
        add("--enable-lora")
        for flag, value in (("--max-loras", pinned.max_loras), ("--max-lora-rank", pinned.max_lora_rank),
                            ("--max-cpu-loras", pinned.max_cpu_loras), ("--lora-dtype", pinned.lora_dtype)):
            if value is not None:
                add(flag, value)
    if pinned.speculative_config is not None:
        add("--speculative-config", json.dumps(pinned.speculative_config, separators=(",", ":")))
    if pinned.cpu_offload_gb:
        add("--cpu-offload-gb", f"{pinned.cpu_offload_gb:g}")
    if pinned.enable_prefix_caching is not None:
        add("--enable-prefix-caching" if pinned.enable_prefix_caching else "--no-enable-prefix-caching")
    if pinned.limit_mm_per_prompt is not None:
        limits = pinned.limit_mm_per_prompt
        if value_format("--limit-mm-per-prompt", version) == "key=value":  # V0's parser: image=2,video=0
            add("--limit-mm-per-prompt", ",".join(f"{k}={v}" for k, v in limits.items()))
        else:
            add("--limit-mm-per-prompt", json.dumps(limits, separators=(",", ":")))
    return args


def device_env(visible_devices: str | None, vendor: str | None) -> list[str]:
    """`VAR=value` words that pin a process to the plan's devices (none when the plan uses every device).

    NVIDIA: `CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=...` (CUDA numbers GPUs fastest-first unless told
    otherwise; PCI_BUS_ID order is nvidia-smi's, which is the numbering the plan's device indices use; a MIG
    slice is pinned by its `MIG-<UUID>`, NVIDIA MIG User Guide, "CUDA Device Enumeration").
    AMD: `HIP_VISIBLE_DEVICES=...`, which vLLM's ROCm platform copies into CUDA_VISIBLE_DEVICES
    (vllm/platforms/rocm.py; accelerators.py has the sources)."""
    if not visible_devices:
        return []
    if vendor == AMD:
        return [f"{HIP_VISIBLE}={shlex.quote(visible_devices)}"]
    return ["CUDA_DEVICE_ORDER=PCI_BUS_ID", f"CUDA_VISIBLE_DEVICES={shlex.quote(visible_devices)}"]


def serve_command(model: str, args: list[str], *, visible_devices: str | None = None, vendor: str | None = None) -> str:
    """One shell-safe line: `[DEVICE PIN] vllm serve MODEL --flag ...` (the pin: device_env)."""
    return " ".join([*device_env(visible_devices, vendor), shlex.join(["vllm", "serve", model, *args])])
