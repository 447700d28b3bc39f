"""The `vllm serve` command for a plan.

Pure: no I/O. Flags use vLLM's spelling. Settings equal to vLLM's default for the target version
are left out, except max_model_len (the plan's memory depends on it). The checkpoint's own
quantization is detected by vLLM and not repeated; only online quantization is passed.
"""

from __future__ import annotations

import shlex
from typing import Any

from planner.schemas import Pinned


def serve_args(config: dict[str, Any], params: dict[str, Any], *, pinned: Pinned, nodes: int = 1) -> list[str]:
    """Flags (after the model) for `vllm serve`."""
    args: list[str] = []
    if config["tensor_parallel_size"] > 1:
        args += ["--tensor-parallel-size", str(config["tensor_parallel_size"])]
    if config["pipeline_parallel_size"] > 1:
        args += ["--pipeline-parallel-size", str(config["pipeline_parallel_size"])]
    if config["data_parallel_size"] > 1:
        args += ["--data-parallel-size", str(config["data_parallel_size"])]
    if pinned.enable_expert_parallel:
        args.append("--enable-expert-parallel")
    if nodes > 1:
        args += ["--distributed-executor-backend", "ray"]
    if pinned.dtype and pinned.dtype != "auto":
        args += ["--dtype", pinned.dtype]
    if pinned.quantization:
        args += ["--quantization", str(config["quantization"])]
    args += ["--max-model-len", str(config["max_model_len"])]
    if abs(config["gpu_memory_utilization"] - float(params["default_gpu_memory_utilization"])) > 1e-9:
        args += ["--gpu-memory-utilization", f"{config['gpu_memory_utilization']:g}"]
    if config["kv_cache_dtype"] != "auto":
        args += ["--kv-cache-dtype", config["kv_cache_dtype"]]
    if config["max_num_seqs"] != int(params["default_max_num_seqs"]):
        args += ["--max-num-seqs", str(config["max_num_seqs"])]
    if config["max_num_batched_tokens"] != int(params["default_max_num_batched_tokens"]):
        args += ["--max-num-batched-tokens", str(config["max_num_batched_tokens"])]
    if config["block_size"] != int(params["default_block_size"]):
        args += ["--block-size", str(config["block_size"])]
    if config["enforce_eager"]:
        args.append("--enforce-eager")
    return args


def serve_command(model: str, config: dict[str, Any], params: dict[str, Any], *, pinned: Pinned,
                  nodes: int = 1, visible_devices: str | None = None) -> str:
    """One shell-safe line: `[CUDA_VISIBLE_DEVICES=...] vllm serve MODEL --flag value ...`."""
    env = [f"CUDA_VISIBLE_DEVICES={shlex.quote(visible_devices)}"] if visible_devices else []
    return " ".join([*env, shlex.join(["vllm", "serve", model, *serve_args(config, params, pinned=pinned,
                                                                           nodes=nodes)])])
