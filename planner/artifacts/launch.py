"""How a planned layout is launched across nodes: one process on one node, or a Ray cluster.

Pure: no I/O. vLLM's rules (vllm-accounting.md 6.1 and vLLM's data-parallel deployment docs):
- a replica (TP x PP GPUs) larger than a node runs as one `vllm serve` on the head of a Ray cluster
  with `--distributed-executor-backend ray`; TP stays inside a node unless pinned wider;
- data parallelism across nodes runs as one `vllm serve` with `--data-parallel-backend ray`, which
  places whole replicas on nodes (`--data-parallel-size-local` of them on the head);
- a replica that spans nodes cannot itself be data-parallel inside one engine: dense models then run
  as independent copies (one Ray cluster each), MoE models (whose experts are sharded across the
  data-parallel ranks) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.errors import InputError
from planner.units import cdiv


@dataclass(frozen=True)
class Launch:
    """The deployment shape of a plan."""

    nodes: int  # nodes (pods) in one group: 1 = single node
    gpus_per_pod: int  # GPUs each node (pod) of a group requests
    groups: int = 1  # independent copies (LeaderWorkerSet replicas); each serves the whole model
    data_parallel_in_engine: int = 1  # --data-parallel-size passed to vllm serve
    data_parallel_local: int | None = None  # --data-parallel-size-local (Ray DP across nodes)
    executor: str | None = None  # --distributed-executor-backend
    dp_backend: str | None = None  # --data-parallel-backend
    notes: list[str] = field(default_factory=list)

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1


def plan_launch(config: dict[str, Any], *, nodes: int, gpus_per_node: int, is_moe: bool, model: str) -> Launch:
    """The launch for `config` on `nodes` x `gpus_per_node` GPUs, or InputError for shapes vLLM cannot run."""
    tp, pp, dp = config["tensor_parallel_size"], config["pipeline_parallel_size"], config["data_parallel_size"]
    replica = tp * pp
    total = replica * dp
    if total > nodes * gpus_per_node:
        raise InputError(f"the layout needs {total} GPUs (TP {tp} x PP {pp} x DP {dp}) but {nodes} node(s) of "
                         f"{gpus_per_node} GPUs hold {nodes * gpus_per_node}")
    if total <= gpus_per_node:
        notes = [f"uses 1 of the {nodes} nodes: the whole layout fits one node"] if nodes > 1 else []
        return Launch(nodes=1, gpus_per_pod=total, data_parallel_in_engine=dp, notes=notes)
    if replica <= gpus_per_node:  # data parallelism crosses nodes; each replica stays on one node
        per_node = gpus_per_node // replica
        used = cdiv(dp, per_node)
        if used > nodes:
            raise InputError(f"{gpus_per_node} GPUs per node hold {per_node} replica(s) of {replica} GPUs, so "
                             f"data_parallel_size {dp} needs {used} nodes but --nodes is {nodes}")
        notes = [f"{dp} data-parallel replicas of {replica} GPU(s): {per_node} per node on {used} nodes, "
                 "launched once through Ray (--data-parallel-backend ray)"]
        return Launch(nodes=used, gpus_per_pod=per_node * replica, data_parallel_in_engine=dp,
                      data_parallel_local=per_node, dp_backend="ray", notes=notes)
    per_replica = cdiv(replica, gpus_per_node)
    notes = [f"each replica spans {per_replica} nodes (TP {tp} x PP {pp} = {replica} GPUs) on a Ray cluster"]
    if tp > gpus_per_node:
        notes.append(f"tensor parallelism {tp} crosses nodes of {gpus_per_node} GPUs: every layer all-reduces "
                     "over the network; only fast (InfiniBand/RoCE) fabrics make this worthwhile")
    if replica % gpus_per_node:
        notes.append(f"the last node of each replica uses {replica % gpus_per_node} of its {gpus_per_node} GPUs")
    if dp > 1:
        if is_moe:
            raise InputError(f"{model}: each data-parallel replica would span {per_replica} nodes (TP {tp} x PP "
                             f"{pp} = {replica} GPUs), but vLLM places a data-parallel rank of a mixture-of-experts "
                             f"model on one node; pin --tp/--pp to fit {gpus_per_node} GPUs, or use --gpus {replica}")
        if per_replica * dp > nodes:
            raise InputError(f"{dp} replicas of {per_replica} nodes need {per_replica * dp} nodes but --nodes is "
                             f"{nodes}")
        notes.append(f"{dp} independent copies (one Ray cluster each), load-balanced by the Service")
    if per_replica * dp < nodes:
        notes.append(f"uses {per_replica * dp} of the {nodes} nodes")
    return Launch(nodes=per_replica, gpus_per_pod=min(replica, gpus_per_node), groups=dp, executor="ray",
                  notes=notes)
