"""Candidate enumeration: which parallel layouts and KV dtypes vLLM could run on the given GPUs.

Pure: no I/O. Validity here is vLLM's, not policy: the attention heads must divide by TP, KV heads
must divide by TP when TP is smaller (vllm-accounting.md 2.1), TP stays inside a node, PP never
exceeds the layer count. Which candidate to choose is the rule packs' business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.artifacts.launch import plan_launch
from planner.errors import InputError
from planner.models.arch import ModelArch

if TYPE_CHECKING:
    from planner.plan.context import PlanContext


@dataclass(frozen=True, order=True)
class Layout:
    tp: int
    pp: int
    dp: int
    ep: bool = False  # --enable-expert-parallel: each of the TP x DP ranks holds whole experts (MoE only)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def key(self) -> str:
        return f"tp{self.tp}-pp{self.pp}-dp{self.dp}" + ("-ep" if self.ep else "")

    @property
    def label(self) -> str:
        return f"TP{self.tp} PP{self.pp} DP{self.dp}" + (" EP" if self.ep else "")


def tp_is_valid(arch: ModelArch, tp: int) -> str | None:
    """None when vLLM accepts this TP for the model, else the reason it refuses."""
    if arch.num_attention_heads % tp:
        return f"{arch.num_attention_heads} attention heads are not divisible by tensor_parallel_size {tp}"
    if arch.mla is None and arch.num_kv_heads > 0 and tp < arch.num_kv_heads and arch.num_kv_heads % tp:
        return f"{arch.num_kv_heads} KV heads are not divisible by tensor_parallel_size {tp}"
    if arch.mla is None and tp > arch.num_kv_heads > 0 and tp % arch.num_kv_heads:
        return f"tensor_parallel_size {tp} is not a multiple of the {arch.num_kv_heads} KV heads"
    return None


def pp_is_valid(arch: ModelArch, pp: int) -> str | None:
    if pp > arch.num_layers:
        return f"pipeline_parallel_size {pp} exceeds the model's {arch.num_layers} layers"
    return None


def layouts(arch: ModelArch, *, total_gpus: int, gpus_per_node: int, nodes: int, tp: int | None = None,
            pp: int | None = None, dp: int | None = None, ep: bool | None = None) -> list[Layout]:
    """Every valid (TP, PP, DP, EP) using at most `total_gpus`; DP takes the GPUs left over.

    TP is a power of two (or the whole node) within a node; it need not divide the node, so a TP group may
    leave GPUs idle (TP4 on six GPUs) when the heads allow no other split. PP spans 1..nodes stages (and
    divisors of the node's GPUs within one node). MoE layouts whose experts are spread over TP x DP > 1 ranks
    come with and without expert parallelism. Pins restrict the set; an invalid pin yields no layout (the
    caller explains).
    """
    tps = [t for t in range(1, gpus_per_node + 1) if t & (t - 1) == 0 or t == gpus_per_node]
    if tp is not None:
        tps = [tp] if tp <= total_gpus else []
    pps = sorted({1, *(p for p in (2, 4, 8, 16) if p <= total_gpus), nodes} - {0})
    if pp is not None:
        pps = [pp]
    out = []
    for t in tps:
        if tp_is_valid(arch, t) is not None:
            continue
        for p in pps:
            if t * p > total_gpus or pp_is_valid(arch, p) is not None:
                continue
            if p > 1 and t * p <= gpus_per_node and nodes > 1 and pp is None:
                continue  # on multi-node clusters keep PP for crossing nodes
            most = max(1, total_gpus // (t * p))
            # MoE data-parallel ranks step together (one engine), so one replica with idle GPUs is a real option
            dps = [dp] if dp is not None else sorted({1, most}) if arch.is_moe else [most]
            for d in dps:
                if t * p * d > total_gpus:
                    continue
                eps = [ep] if ep is not None else [False, True] if arch.is_moe and t * d > 1 else [False]
                out.extend(Layout(tp=t, pp=p, dp=d, ep=e) for e in eps)
    return sorted(set(out), key=lambda lay: (lay.tp * lay.pp, lay.pp, lay.tp, lay.ep))


def launchable(ctx: PlanContext, lays: list[Layout]) -> list[Layout]:
    """The layouts the target vLLM version can launch on this cluster shape: where it lacks the flags
    (or vLLM the support) for a layout's data parallelism, the layout runs one replica instead."""
    out: list[Layout] = []
    for lay in lays:
        if not launch_ok(ctx, lay):
            lay = Layout(tp=lay.tp, pp=lay.pp, dp=1, ep=lay.ep and lay.tp > 1)
            if not launch_ok(ctx, lay):
                continue
        if lay not in out:
            out.append(lay)
    return out


def launch_ok(ctx: PlanContext, lay: Layout) -> bool:
    from planner.artifacts.flags import flag_exists

    cfg = {"tensor_parallel_size": lay.tp, "pipeline_parallel_size": lay.pp, "data_parallel_size": lay.dp}
    try:
        lo = plan_launch(cfg, nodes=ctx.hw.nodes, gpus_per_node=ctx.hw.gpus_per_node, is_moe=ctx.arch.is_moe,
                         model=ctx.arch.name)
    except InputError:
        return False
    needed = (["--data-parallel-size"] if lo.data_parallel_in_engine > 1 else []) + \
        (["--data-parallel-size-local", "--data-parallel-backend"] if lo.data_parallel_local else [])
    return all(flag_exists(flag, ctx.version) for flag in needed)
