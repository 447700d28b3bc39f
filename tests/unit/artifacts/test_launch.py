"""Deployment shapes: where each replica runs, and which shapes vLLM cannot run (hand-derived)."""

from __future__ import annotations

import pytest

from planner.artifacts.launch import plan_launch
from planner.errors import InputError


def cfg(tp: int, pp: int, dp: int) -> dict:
    return {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "data_parallel_size": dp}


def test_single_node_layout_is_one_process() -> None:
    lo = plan_launch(cfg(4, 1, 2), nodes=1, gpus_per_node=8, is_moe=False, model="m")
    assert (lo.nodes, lo.gpus_per_pod, lo.data_parallel_in_engine, lo.executor, lo.dp_backend) == (1, 8, 2, None, None)
    assert not lo.multi_node


def test_layout_that_fits_one_node_of_several_uses_one_node() -> None:
    lo = plan_launch(cfg(8, 1, 1), nodes=2, gpus_per_node=8, is_moe=False, model="m")
    assert lo.nodes == 1 and "uses 1 of the 2 nodes" in lo.notes[0]


def test_tp8_pp2_on_two_nodes_is_one_ray_cluster() -> None:
    # vLLM docs: TP = GPUs per node, PP = nodes, one `vllm serve` with --distributed-executor-backend ray
    lo = plan_launch(cfg(8, 2, 1), nodes=2, gpus_per_node=8, is_moe=False, model="m")
    assert (lo.nodes, lo.gpus_per_pod, lo.groups, lo.executor) == (2, 8, 1, "ray")


def test_data_parallel_across_nodes_uses_ray_dp_with_local_ranks() -> None:
    # 16 replicas of 1 GPU on 2 x 8: 8 per node, one launch with --data-parallel-backend ray
    lo = plan_launch(cfg(1, 1, 16), nodes=2, gpus_per_node=8, is_moe=True, model="m")
    assert (lo.nodes, lo.gpus_per_pod, lo.data_parallel_in_engine, lo.data_parallel_local, lo.dp_backend) == \
        (2, 8, 16, 8, "ray")
    assert lo.executor is None


def test_replicas_that_do_not_pack_into_nodes_are_refused() -> None:
    # TP 3 on 8-GPU nodes: 2 replicas per node; 5 replicas need 3 nodes
    with pytest.raises(InputError, match="data_parallel_size 5 needs 3 nodes but --nodes is 2"):
        plan_launch(cfg(3, 1, 5), nodes=2, gpus_per_node=8, is_moe=False, model="m")


def test_dense_replicas_spanning_nodes_become_independent_groups() -> None:
    lo = plan_launch(cfg(8, 2, 2), nodes=4, gpus_per_node=8, is_moe=False, model="m")
    assert (lo.nodes, lo.groups, lo.executor, lo.data_parallel_in_engine) == (2, 2, "ray", 1)


def test_moe_replicas_spanning_nodes_are_refused() -> None:
    with pytest.raises(InputError, match="mixture-of-experts"):
        plan_launch(cfg(8, 2, 2), nodes=4, gpus_per_node=8, is_moe=True, model="deepseek")


def test_uneven_last_node_and_cross_node_tp_are_noted() -> None:
    lo = plan_launch(cfg(4, 3, 1), nodes=2, gpus_per_node=8, is_moe=False, model="m")
    assert lo.nodes == 2 and any("uses 4 of its 8 GPUs" in n for n in lo.notes)
    lo = plan_launch(cfg(16, 1, 1), nodes=2, gpus_per_node=8, is_moe=False, model="m")
    assert any("crosses nodes" in n for n in lo.notes)


def test_more_gpus_than_the_cluster_is_refused() -> None:
    with pytest.raises(InputError, match="needs 32 GPUs"):
        plan_launch(cfg(8, 2, 2), nodes=2, gpus_per_node=8, is_moe=False, model="m")
