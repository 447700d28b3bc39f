"""docker-compose.yaml for a plan (Compose Specification; checked with `docker compose config`).

Pure: no I/O. Single node: one `vllm` service with the GPUs reserved by count (or by device id when
the plan picked specific GPUs), `ipc: host` for PyTorch's shared memory, the Hugging Face cache
mounted, HF_TOKEN from the environment and a /health check. Multi-node: a `vllm-head` and a
`vllm-worker` service (profiles `head` and `worker`) on the host network that form a Ray cluster the
way vLLM's multi-node-serving.sh does; run the head on one node and the worker on the others.

GPU access follows the vendor (accelerators.py, with the sources):
- NVIDIA: a `driver: nvidia` device reservation (Compose's spelling of `docker run --gpus`); a MIG
  slice is reserved by its UUID (`device_ids: ["MIG-..."]`) when the capture listed it.
- AMD: vLLM's `docker run` flags for ROCm in Compose's spelling: `devices: [/dev/kfd, /dev/dri]`,
  `group_add: [video, render]`, `cap_add: [SYS_PTRACE]`, `security_opt: [seccomp=unconfined]` and
  `ipc: host`, the ROCm image, and HIP_VISIBLE_DEVICES when the plan picked GPUs. No NVIDIA reservation.
"""

from __future__ import annotations

import shlex
from typing import Any

from planner.artifacts.accelerators import (
    HIP_VISIBLE,
    NVIDIA_MIG_GUIDE,
    ROCM_CAPS,
    ROCM_DEVICES,
    ROCM_GROUPS,
    ROCM_SECURITY_OPT,
    VLLM_ROCM_DOCS,
)
from planner.artifacts.common import HF_CACHE_IN_CONTAINER, ray_head_then, ray_worker
from planner.artifacts.deploy import Deploy
from planner.artifacts.yamlout import to_yaml


def _health(port: int, start_s: int) -> dict[str, Any]:
    probe = f"import urllib.request; urllib.request.urlopen('http://localhost:{port}/health', timeout=5)"
    return {"test": ["CMD", "python3", "-c", probe], "interval": "30s", "timeout": "10s", "retries": 3,
            "start_period": f"{start_s}s"}


def _gpus(d: Deploy, count: int) -> dict[str, Any]:
    """The service keys that give it the plan's GPUs."""
    if d.amd:  # devices and groups give the container every GPU; HIP_VISIBLE_DEVICES (in _base) picks the plan's
        return {"devices": list(ROCM_DEVICES), "group_add": list(ROCM_GROUPS), "cap_add": list(ROCM_CAPS),
                "security_opt": list(ROCM_SECURITY_OPT)}
    dev: dict[str, Any] = {"driver": "nvidia"}
    if d.device_ids and not d.launch.multi_node:
        dev["device_ids"] = list(d.device_ids)  # GPU indices, or the MIG slice's MIG-<UUID>
    else:
        dev["count"] = count
    dev["capabilities"] = ["gpu"]
    return {"deploy": {"resources": {"reservations": {"devices": [dev]}}}}


def _base(d: Deploy) -> dict[str, Any]:
    volumes = [f"${{HF_CACHE_DIR:-~/.cache/huggingface}}:{HF_CACHE_IN_CONTAINER}"]
    if d.local_dir:
        volumes.append(_escape(f"{d.local_dir}:{d.container_model}:ro"))
    env = {"HF_TOKEN": "${HF_TOKEN:-}"}
    if d.amd and d.device_ids and not d.launch.multi_node:
        env[HIP_VISIBLE] = ",".join(d.device_ids)
    return {
        "image": d.image.ref,
        "ipc": "host",
        "environment": env,
        "volumes": volumes,
        "labels": d.stamp.labels(),
    }


def _hardware_notes(d: Deploy) -> list[str]:
    """Header comments on how the file reaches the GPUs (and where its image comes from)."""
    notes = []
    if d.amd:
        notes.append(f"AMD ROCm: devices, group_add, cap_add, security_opt and ipc are vLLM's docker flags for ROCm "
                     f"({VLLM_ROCM_DOCS})")
        if d.device_ids and not d.launch.multi_node:
            notes.append(f"{HIP_VISIBLE}={','.join(d.device_ids)} picks the planned GPUs")
    if d.image.note:
        notes.append(f"Image: {d.image.note}")
    if d.mig_profile:
        if d.mig_uuid:
            notes.append(f"MIG slice {d.mig_profile}: reserved by its UUID {d.mig_uuid} ({NVIDIA_MIG_GUIDE})")
        else:
            notes.append(f"MIG slice {d.mig_profile}: the capture has no MIG UUID. Run `nvidia-smi -L` and replace "
                         f'`count: 1` with `device_ids: ["MIG-<UUID>"]` of the {d.mig_profile} slice; with count the '
                         "container gets the whole GPU, and vLLM the first slice it finds")
    return notes


def _escape(value: str) -> str:
    """Compose interpolates `$`; a literal one is written `$$`."""
    return value.replace("$", "$$")


def compose_yaml(d: Deploy) -> str:
    """The compose file's text."""
    if not d.launch.multi_node:
        svc = {**_base(d), "entrypoint": ["vllm", "serve"],
               "command": [_escape(a) for a in (d.container_model, *d.args)],
               "ports": [f"{d.port}:{d.port}"], **_gpus(d, d.launch.gpus_per_pod),
               "healthcheck": _health(d.port, d.startup_s), "restart": "unless-stopped"}
        doc = {"services": {"vllm": svc}}
        how = ["Start: docker compose up -d   (HF_TOKEN and HF_CACHE_DIR are read from the environment)"]
    else:
        serve = _escape(shlex.join(["vllm", "serve", d.container_model, *d.args]))
        head_cmd = ray_head_then(serve, d.launch.nodes)
        worker_cmd = ('test -n "$$VLLM_HEAD_IP" || { echo "set VLLM_HEAD_IP to the head node address" >&2; exit 2; }; '
                      + ray_worker("$$VLLM_HEAD_IP"))
        common = {**_base(d), "network_mode": "host", "entrypoint": ["/bin/bash", "-c"],
                  **_gpus(d, d.launch.gpus_per_pod)}
        common["environment"] = {**common["environment"], "VLLM_HOST_IP": "${VLLM_HOST_IP:-}"}
        doc = {"services": {
            "vllm-head": {**common, "profiles": ["head"], "command": [head_cmd],
                          "healthcheck": _health(d.port, d.startup_s), "restart": "unless-stopped"},
            "vllm-worker": {**common, "profiles": ["worker"], "command": [worker_cmd],
                            "environment": {**common["environment"], "VLLM_HEAD_IP": "${VLLM_HEAD_IP:-}"},
                            "restart": "unless-stopped"},
        }}
        how = [f"Multi-node: {d.launch.nodes} nodes of {d.launch.gpus_per_pod} GPUs, one Ray cluster.",
               "  head node:    VLLM_HOST_IP=<this node's IP> docker compose --profile head up -d",
               "  other nodes:  VLLM_HOST_IP=<this node's IP> VLLM_HEAD_IP=<head IP> "
               "docker compose --profile worker up -d",
               f"Start the workers within a few minutes of the head: it waits for {d.launch.nodes} nodes."]
    return to_yaml(doc, comments=[d.stamp.line(), *how, *_hardware_notes(d), *d.notes])
