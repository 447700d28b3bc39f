"""Launchability facts: what vLLM checks at start-up that a layout can break, computed for each candidate.

Pure: no I/O. These are vLLM's mechanisms, not policy, so they are computed here; the pack's `gate.*`
rules (stage sizing) refuse the candidates on them, each citing the vLLM source it mirrors, so that the
plan says which rule refused what and a site can see (or, at its own risk, disable) every gate.

Block- and group-quantized weights: a tensor-parallel shard must hold whole quantization blocks.
- FP8 block quantization (weight_block_size [n, k]): vllm/model_executor/layers/quantization/fp8.py
  validate_fp8_block_shape (column-parallel output partitions % block_n, row-parallel input partition
  % block_k) and Fp8MoEMethod.create_weights ("The output_size of gate's and up's weight = 192 is not
  divisible by weight quantization block_n = 128").
- AWQ/GPTQ groups: the row-parallel input partition must hold whole groups (gptq.py / awq.py: "The input
  size is not aligned with the quantized weight shape. This can be caused by too large tensor parallel
  size.").
A fused-MoE layer's experts are split over the TP x DP ranks of the engine without expert parallelism
(vllm/model_executor/layers/fused_moe/config.py FusedMoEParallelConfig.make: tp_size = dp x tp), and are
whole on each rank with --enable-expert-parallel.
"""

from __future__ import annotations

from typing import Any

from planner.models.arch import ModelArch
from planner.plan.layouts import Layout, tp_is_valid


def _moe_shard_ranks(arch: ModelArch, layout: Layout) -> int:
    """Ranks one expert's intermediate is split over (1 with expert parallelism)."""
    return 1 if layout.ep else layout.tp * layout.dp


def quant_shard_problem(arch: ModelArch, layout: Layout) -> str | None:
    """Why vLLM would refuse this layout's weight shards for a block/group-quantized checkpoint, or None."""
    q = arch.quant
    if q is None:
        return None
    if q.block_size is not None:
        block_n, block_k = q.block_size
        checks = []
        if layout.tp > 1:
            dense = [("intermediate_size", arch.intermediate_size)] if arch.intermediate_size else []
            if arch.moe is not None and arch.moe.shared_expert_intermediate_size:
                dense.append(("shared_expert_intermediate_size", arch.moe.shared_expert_intermediate_size))
            if arch.mla is None:
                dense.append(("attention heads x head_dim", arch.num_attention_heads * arch.head_dim))
            checks += [(name, size, layout.tp) for name, size in dense]
        if arch.moe is not None and _moe_shard_ranks(arch, layout) > 1:
            checks.append(("moe_intermediate_size", arch.moe.moe_intermediate_size, _moe_shard_ranks(arch, layout)))
        for name, size, ranks in checks:
            part = size // ranks
            if size % ranks or part % block_n or part % block_k:
                return (f"{name} {size} / {ranks} ranks = {size / ranks:g} is not a multiple of the checkpoint's "
                        f"{block_n}x{block_k} FP8 weight block (vLLM: not divisible by weight quantization block_n)")
        return None
    if q.group_size and q.group_size > 0 and q.method in ("awq", "awq_marlin", "gptq", "gptq_marlin"):
        rows = [("intermediate_size", arch.intermediate_size, layout.tp)] if arch.intermediate_size else []
        if arch.moe is not None:
            rows.append(("moe_intermediate_size", arch.moe.moe_intermediate_size, _moe_shard_ranks(arch, layout)))
        for name, size, ranks in rows:
            if ranks > 1 and (size % ranks or (size // ranks) % q.group_size):
                return (f"{name} {size} / {ranks} ranks = {size / ranks:g} is not a multiple of the {q.method} "
                        f"group size {q.group_size} (vLLM: the input size is not aligned with the quantized weight "
                        "shape)")
    return None


def launch_fields(arch: ModelArch, layout: Layout, gpus_per_node: int) -> dict[str, Any]:
    """The candidate-fact fields gate and layout rules match on."""
    problem = quant_shard_problem(arch, layout)
    replica = layout.tp * layout.pp
    return {"enable_expert_parallel": layout.ep, "quant_shards_aligned": problem is None,
            "quant_shard_problem": problem or "", "gpus_per_replica": replica,
            "pp_replaceable_by_tp": layout.pp > 1 and replica <= gpus_per_node and tp_is_valid(arch, replica) is None}
