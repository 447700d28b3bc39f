"""What the artifact renderers need from a plan, gathered once (pure: no I/O).

The serve arguments are taken from the plan's own serve_command, so every artifact runs exactly the
command the plan prints; deployment knobs (port, shared memory, cache size, start-up time) are
rule-pack params (`deploy_*`), so a site tunes them in YAML. The GPU vendor comes from the plan's
hardware (`hardware.vendor`, the catalog's), the MIG slice from its selected device (`mig_profile`) and
its UUID from the plan's device pin (`hardware.visible_devices`, a `MIG-...` UUID when the capture
listed one): accelerators.py says what each needs.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.artifacts.accelerators import AMD, NVIDIA, Image, container_image
from planner.artifacts.common import MODELS_IN_CONTAINER, Stamp
from planner.artifacts.launch import Launch
from planner.schemas import PlanRequest, PlanResponse
from planner.units import GiB


@dataclass(frozen=True)
class Deploy:
    plan: PlanResponse
    request: PlanRequest
    stamp: Stamp
    model: str  # as the plan names it: a hub/catalog id, or an absolute local directory
    args: tuple[str, ...]  # vllm serve flags after the model
    local_dir: str | None  # the model is this directory on the host (mounted read-only into containers)
    launch: Launch
    device_ids: tuple[str, ...]  # CUDA_VISIBLE_DEVICES of the plan, when it picked GPUs (a MIG slice: its UUID)
    port: int
    shm_gib: int
    cache_gib: int
    startup_s: int
    bench_rounds: int
    bench_min_prompts: int
    vendor: str = NVIDIA  # "nvidia" | "amd" (GPUs outside the catalog are probed with nvidia-smi: nvidia)
    mig_profile: str | None = None  # the plan runs on one MIG slice of this profile, e.g. "2g.12gb"

    @property
    def amd(self) -> bool:
        return self.vendor == AMD

    @property
    def mig_uuid(self) -> str | None:
        """The slice's `MIG-...` UUID, when the capture listed it (`nvidia-smi -L`, `-q`)."""
        ids = [i for i in self.device_ids if i.startswith("MIG-")]
        return ids[0] if self.mig_profile and ids else None

    @property
    def image(self) -> Image:
        return container_image(self.stamp.vllm_version, self.vendor)

    @property
    def container_model(self) -> str:
        """The model argument inside a container: local directories are mounted under /models."""
        return f"{MODELS_IN_CONTAINER}/{Path(self.local_dir).name}" if self.local_dir else self.model

    @property
    def served_name(self) -> str:
        """The name clients use: a local directory is served under its base name everywhere."""
        return Path(self.local_dir).name if self.local_dir else self.model

    @property
    def notes(self) -> list[str]:
        return list(self.launch.notes)

    @property
    def gpu_name(self) -> str:
        return self.plan.hardware.gpu


def split_serve_command(command: str) -> tuple[str, tuple[str, ...]]:
    """(model, flags) of `[VAR=x ...] vllm serve MODEL flags...` (the environment is the plan's device pin,
    which each artifact expresses its own way)."""
    words = shlex.split(command)
    rest = words[words.index("vllm"):]
    if rest[:2] != ["vllm", "serve"] or len(rest) < 3:
        raise ValueError(f"not a vllm serve command: {command!r}")
    return rest[2], tuple(rest[3:])


def make_deploy(plan: PlanResponse, request: PlanRequest, params: dict[str, Any]) -> Deploy:
    """Gather a plan's deployment inputs. The plan must be feasible and carry its launch shape."""
    assert plan.launch is not None, "plans made by this planner carry their launch"
    model, args = split_serve_command(plan.serve_command)
    lo = plan.launch
    launch = Launch(nodes=lo.nodes, gpus_per_pod=lo.gpus_per_pod, groups=lo.groups,
                    data_parallel_in_engine=lo.data_parallel_in_engine, data_parallel_local=lo.data_parallel_local,
                    executor=lo.executor, dp_backend=lo.dp_backend, notes=list(lo.notes))
    port = int(params["deploy_port"])  # serve_args already passes --port when it is not vLLM's default
    local_dir = model if plan.model.source.startswith("local:") else None
    if local_dir:  # one API name for the script and the containers, whatever the path
        args = (*args, "--served-model-name", Path(local_dir).name)
    devices = plan.hardware.visible_devices
    migs = [dev.mig_profile for dev in plan.hardware.devices if dev.selected and dev.mig_profile]
    assert len(migs) <= 1, "a plan never spans MIG slices (planner/hardware/select.py)"
    weights_gib = plan.memory.weights_total_bytes / GiB
    step = int(params["deploy_cache_step_gib"])
    cache = max(step, math.ceil(weights_gib * float(params["deploy_cache_headroom"]) / step) * step)
    return Deploy(plan=plan, request=request, stamp=Stamp.of(plan), model=model, args=args, local_dir=local_dir,
                  launch=launch,
                  device_ids=tuple(devices.split(",")) if devices else (), port=port,
                  shm_gib=int(params["deploy_shm_gib"]), cache_gib=cache, startup_s=int(params["deploy_startup_s"]),
                  bench_rounds=int(params["deploy_bench_rounds"]),
                  bench_min_prompts=int(params["deploy_bench_min_prompts"]),
                  vendor=AMD if plan.hardware.vendor == AMD else NVIDIA, mig_profile=next(iter(migs), None))
