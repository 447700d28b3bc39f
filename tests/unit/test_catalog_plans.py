"""Every bundled model plans without error, and the plan's numbers hold together (issue 4 item 1)."""

from __future__ import annotations

import shlex

import pytest

from planner.app import plan
from planner.models.sources import list_catalog
from planner.schemas import PlanRequest
from tests.vllm_parser import assert_vllm_accepts

IDS = [e.id for e in list_catalog()]


@pytest.mark.parametrize("model", IDS)
@pytest.mark.parametrize(("gpu", "gpus"), [("H200", 8), ("L4", 1)], ids=["8xH200", "1xL4"])
def test_every_catalog_model_plans(model: str, gpu: str, gpus: int) -> None:
    p = plan(PlanRequest(model=model, gpu=gpu, gpus=gpus))
    m = p.memory.per_gpu
    if p.feasible:
        assert m.kv_cache_bytes > 0 and p.memory.kv_cache_tokens > 0
        parts = m.weights_bytes + m.activation_peak_bytes + m.non_torch_bytes + m.kv_cache_bytes + (
            m.cuda_graph_bytes if p.memory.cuda_graph_in_budget else 0)
        assert parts == m.budget_bytes
        assert p.serve_command.startswith(f"vllm serve {model}")
        assert_vllm_accepts(shlex.split(p.serve_command), p.vllm_version)  # vLLM 0.33.0's own parser accepts it
    else:  # nothing runnable is printed for a plan that does not fit; the line says why
        assert p.infeasible_reason and p.serve_command == f"# nothing to run: {p.infeasible_reason}; see fixes"
