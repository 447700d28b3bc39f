"""Launchability facts (planner/plan/gate.py) and the layout enumeration (planner/plan/layouts.py), against
numbers worked out by hand from the checkpoints' config.json and vLLM's own checks."""

from __future__ import annotations

import pytest

from planner.models.sources import load_model
from planner.plan.gate import quant_shard_problem
from planner.plan.layouts import Layout, layouts

QWEN3_30B_FP8 = "Qwen/Qwen3-30B-A3B-FP8"  # moe_intermediate_size 768, weight_block_size [128, 128], 48 MoE layers


@pytest.mark.parametrize(("layout", "refused"), [
    (Layout(tp=2, pp=1, dp=1), False),          # 768 / 2 = 384 = 3 x 128
    (Layout(tp=4, pp=1, dp=1), True),           # 768 / 4 = 192, not a multiple of 128 (vllm#25292)
    (Layout(tp=4, pp=1, dp=1, ep=True), False),  # whole experts: 768 = 6 x 128; attention 32 x 128 / 4 = 1024
    (Layout(tp=1, pp=1, dp=4), True),           # without EP the experts are split over TP x DP = 4 ranks: 192
    (Layout(tp=1, pp=1, dp=4, ep=True), False),
])
def test_fp8_block_shards_follow_vllms_check(layout: Layout, refused: bool) -> None:
    problem = quant_shard_problem(load_model(QWEN3_30B_FP8), layout)
    assert (problem is not None) == refused
    if refused:
        assert "768 / 4 ranks = 192" in problem and "128x128" in problem


def test_deepseek_v3_at_tp8_holds_whole_blocks() -> None:
    """DeepSeek-V3 (block FP8 128x128): 18432 / 8 = 2304 = 18 x 128 (dense layers), 2048 / 8 = 256 (experts)."""
    assert quant_shard_problem(load_model("deepseek-ai/DeepSeek-V3"), Layout(tp=8, pp=1, dp=1)) is None


def test_unquantized_models_have_no_shard_problem() -> None:
    assert quant_shard_problem(load_model("Qwen/Qwen3-30B-A3B"), Layout(tp=4, pp=1, dp=1)) is None


def test_tp4_on_six_gpus_leaves_two_idle() -> None:
    """Llama-3.1-70B (64 heads, 8 KV heads) on 6 GPUs: TP4 is valid (64 % 4 = 0, 8 % 4 = 0) and 6 // 4 = 1
    replica; TP3 and TP6 are not (64 % 3, 64 % 6)."""
    lays = layouts(load_model("meta-llama/Llama-3.1-70B-Instruct"), total_gpus=6, gpus_per_node=6, nodes=1)
    assert Layout(tp=4, pp=1, dp=1) in lays
    assert not any(lay.tp in (3, 6) for lay in lays)
    assert not any(lay.ep for lay in lays)  # dense: no expert parallelism


def test_moe_layouts_offer_ep_and_a_single_replica() -> None:
    lays = layouts(load_model("Qwen/Qwen3-30B-A3B"), total_gpus=4, gpus_per_node=4, nodes=1, pp=1)
    want = {Layout(1, 1, 4), Layout(1, 1, 4, True), Layout(1, 1, 1), Layout(4, 1, 1), Layout(4, 1, 1, True)}
    assert want <= set(lays)
    assert Layout(1, 1, 1, True) not in lays  # one rank: nothing to spread the experts over
    pinned = layouts(load_model("Qwen/Qwen3-30B-A3B"), total_gpus=4, gpus_per_node=4, nodes=1, dp=4, ep=True)
    assert pinned and all(lay.dp == 4 and lay.ep for lay in pinned)


def test_a_gate_refusing_every_layout_offers_no_memory_fix() -> None:
    """A V100 (compute capability 7.0) on the newest vLLM (7.5 minimum, vLLM docs v0.21): no number of GPUs,
    shorter context or quantization starts it, so the plan says why and lists no fix; on vLLM 0.11 it plans."""
    from planner.app import plan
    from planner.schemas import PlanRequest

    req = {"model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "V100-SXM2-32GB"}
    refused = plan(PlanRequest.model_validate(req))
    assert not refused.feasible and refused.fixes == []
    assert "gate.platform.cuda-min-capability-7-5" in (refused.infeasible_reason or "")
    old = plan(PlanRequest.model_validate({**req, "vllm_version": "0.11.0"}))
    assert old.feasible
