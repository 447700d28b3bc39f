"""What every generated artifact shares: the stamp (plan id, planner and pack versions), names, image
(per GPU vendor: accelerators.py).

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planner.artifacts.accelerators import NVIDIA, container_image
from planner.schemas import PlanResponse

HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
MODELS_IN_CONTAINER = "/models"  # where a local model directory is mounted (read-only)
RAY_PORT = 6379  # Ray's default GCS port, as vLLM's multi-node-serving.sh uses it


def ray_head_then(serve: str, nodes: int) -> str:
    """Shell: start a Ray head, wait until `nodes` nodes have joined, then exec `serve`.

    The same steps as vLLM's examples/online_serving/multi-node-serving.sh (`leader`), written out so
    the artifacts do not depend on where an image keeps that script. No `$` appears, so the line means
    the same in a shell, in compose and in a Kubernetes command."""
    wait = ("until python3 -c 'import ray, sys; ray.init(address=\"auto\", logging_level=\"ERROR\"); "
            f"sys.exit(0 if sum(n[\"Alive\"] for n in ray.nodes()) >= {nodes} else 1)' >/dev/null 2>&1; "
            "do sleep 5; done")
    return f"ray start --head --port={RAY_PORT} && {wait} && exec {serve}"


def ray_worker(head: str) -> str:
    """Shell: join the Ray cluster at `head` (retrying until the head is up) and stay in the foreground."""
    return f"until ray start --block --address={head}:{RAY_PORT}; do sleep 5; done"


@dataclass(frozen=True)
class Stamp:
    """Identifies the plan behind a set of files, so a reader can tell they belong together."""

    plan_id: str
    planner_version: str
    vllm_version: str
    packs: str  # "core@0.1.0 (32eca0768db4), site@1.0.0 (...)"

    @classmethod
    def of(cls, plan: PlanResponse) -> Stamp:
        packs = ", ".join(f"{p['name']}@{p['version']} ({p['sha256'][:12]})" for p in plan.audit.get("packs", []))
        return cls(plan_id=plan.plan_id, planner_version=plan.planner_version, vllm_version=plan.vllm_version,
                   packs=packs)

    def line(self) -> str:
        return (f"vllm-planner {self.planner_version}, plan {self.plan_id}, vLLM {self.vllm_version}, "
                f"rule packs {self.packs}")

    def labels(self) -> dict[str, str]:
        """Kubernetes/compose labels (values must be <= 63 chars of [A-Za-z0-9._-])."""
        return {"vllm-planner/plan-id": self.plan_id, "vllm-planner/version": self.planner_version,
                "vllm-planner/vllm-version": self.vllm_version}


def slug(model: str, limit: int = 40) -> str:
    """A DNS-1123 label from a model id: `meta-llama/Llama-3.1-8B` -> `llama-3-1-8b`."""
    base = model.rstrip("/").split("/")[-1].lower()
    s = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:limit].strip("-")
    return f"vllm-{s}" if s else "vllm"


def image(vllm_version: str, vendor: str = NVIDIA) -> str:
    """The vLLM OpenAI-server image for the version and GPU vendor (accelerators.container_image): for NVIDIA
    `vllm/vllm-openai:v` + the release (pre/dev builds use their release: 0.11.0rc1.dev5+g12 -> v0.11.0)."""
    return container_image(vllm_version, vendor).ref


def gpu_product_label(gpu_name: str) -> str:
    """The `nvidia.com/gpu.product` node label GPU feature discovery sets: the name with spaces as dashes."""
    return re.sub(r"\s+", "-", gpu_name.strip())
