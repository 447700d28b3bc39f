"""Kubernetes manifests for a plan, following vLLM's deployment docs (deployment/k8s.md, frameworks/lws.md).

Pure: no I/O. Single node: a PersistentVolumeClaim for the model cache, a Deployment (GPUs as
`nvidia.com/gpu`, node selection by the `nvidia.com/gpu.product` label GPU feature discovery sets,
startup/readiness/liveness probes on /health, an in-memory /dev/shm) and a ClusterIP Service.
Multi-node: a LeaderWorkerSet whose leader starts a Ray head, waits for the group (as vLLM's
multi-node-serving.sh does) and then runs `vllm serve`, whose workers join it; the Service selects
the leaders.

By vendor (accelerators.py, with the sources):
- AMD: `amd.com/gpu` (AMD's device plugin), nodes chosen by the `amd.com/gpu.device-id` label of AMD's
  node labeller, the ROCm image, seccomp Unconfined and SYS_PTRACE as AMD's vLLM example sets them; no
  NVIDIA toleration.
- A MIG slice: `nvidia.com/mig-<profile>: 1` (the device plugin's `mixed` MIG strategy); the file's
  comments say what the `single` strategy needs instead.

Kubernetes expands `$(VAR)` (and reads `$$` as `$`) in a container's command, args and env values, so every
value from the plan goes there through `literal`; the one reference meant for Kubernetes is the LWS
worker's `$(LWS_LEADER_ADDRESS)`.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

from planner.artifacts.accelerators import (
    AMD_DEVICE_ID_LABEL,
    AMD_DEVICE_PLUGIN,
    AMD_GPU_RESOURCE,
    NVIDIA_MIG_K8S,
    ROCM_CAPS,
    amd_device_ids,
    mig_resource,
)
from planner.artifacts.common import HF_CACHE_IN_CONTAINER, gpu_product_label, ray_head_then, ray_worker, slug
from planner.artifacts.deploy import Deploy
from planner.artifacts.yamlout import to_yaml

HF_SECRET = {"name": "hf-token", "key": "token"}


def literal(s: str) -> str:
    """`s` as a container command/args/env value that Kubernetes passes on unchanged: each `$` that starts
    `$(` or `$$` doubled (a model directory named `$(HF_TOKEN)` must not become the token)."""
    return re.sub(r"\$(?=[$(])", "$$", s)


def _meta(d: Deploy, name: str) -> dict[str, Any]:
    return {"name": name, "labels": {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": slug(d.model),
                                     "app.kubernetes.io/managed-by": "vllm-planner"},
            "annotations": {**d.stamp.labels(), "vllm-planner/model": d.model}}


def _selector(d: Deploy) -> dict[str, str]:
    return {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": slug(d.model)}


def _env() -> list[dict[str, Any]]:
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {**HF_SECRET, "optional": True}}}]


def _probes(d: Deploy) -> dict[str, Any]:
    get = {"path": "/health", "port": "http"}
    return {
        "startupProbe": {"httpGet": get, "periodSeconds": 10, "failureThreshold": math.ceil(d.startup_s / 10)},
        "readinessProbe": {"httpGet": get, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": get, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3},
    }


def _volumes(d: Deploy) -> list[dict[str, Any]]:
    out = [{"name": "model-cache", "persistentVolumeClaim": {"claimName": f"{slug(d.model)}-cache"}},
           {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{d.shm_gib}Gi"}}]
    if d.local_dir:  # the directory must exist on the GPU nodes; replace with a PVC holding the model if not
        out.append({"name": "model", "hostPath": {"path": d.local_dir, "type": "Directory"}})
    return out


def _mounts(d: Deploy) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "model-cache", "mountPath": HF_CACHE_IN_CONTAINER},
                                 {"name": "dshm", "mountPath": "/dev/shm"}]
    if d.local_dir:
        out.append({"name": "model", "mountPath": d.container_model, "readOnly": True})
    return out


def _gpu_resources(d: Deploy, n: int) -> dict[str, Any]:
    # a MIG slice is its own resource under the `mixed` strategy (one slice: a plan never spans slices)
    name = AMD_GPU_RESOURCE if d.amd else mig_resource(d.mig_profile) or "nvidia.com/gpu"
    return {"limits": {name: n}, "requests": {name: n}}


def _security(d: Deploy) -> dict[str, Any]:
    """AMD: what vLLM's `--security-opt seccomp=unconfined --cap-add=SYS_PTRACE` are in a pod, as AMD's vLLM example
    (ROCm/k8s-device-plugin example/vllm-serve/deployment.yaml) writes them."""
    if not d.amd:
        return {}
    return {"securityContext": {"seccompProfile": {"type": "Unconfined"}, "capabilities": {"add": list(ROCM_CAPS)}}}


def _placement(d: Deploy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if d.amd:  # AMD's node labeller: amd.com/gpu.device-id=<PCI device id>; no NVIDIA taint to tolerate
        ids = amd_device_ids(d.plan.hardware.catalog_id)
        if ids:
            term = {"matchExpressions": [{"key": AMD_DEVICE_ID_LABEL, "operator": "In", "values": list(ids)}]}
            out["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [term]}}}
        return out
    if d.plan.hardware.catalog_id:
        out["nodeSelector"] = {"nvidia.com/gpu.product": gpu_product_label(d.gpu_name)}
    out["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return out


def _hardware_notes(d: Deploy) -> list[str]:
    """Comments on the workload file: how it reaches the GPUs, and what to change for other cluster setups."""
    notes = []
    if d.amd:
        notes.append(f"AMD GPUs: {AMD_GPU_RESOURCE} comes from AMD's device plugin, the {AMD_DEVICE_ID_LABEL} node "
                     f"label from its node labeller (k8s-ds-amdgpu-labeller.yaml): {AMD_DEVICE_PLUGIN}")
        if not amd_device_ids(d.plan.hardware.catalog_id):
            notes.append(f"No node selection for {d.gpu_name}: add a nodeSelector on amd.com/gpu.product-name "
                         "(kubectl get nodes -L amd.com/gpu.product-name shows the values)")
    if d.image.note:
        notes.append(f"Image: {d.image.note}")
    if d.mig_profile:
        p = d.mig_profile
        if mig_resource(p):
            single = gpu_product_label(f"{d.gpu_name}-MIG-{p}")
            notes += [f"MIG slice {p}: requests {mig_resource(p)}: 1, the device plugin's MIG strategy 'mixed' "
                      f"({NVIDIA_MIG_K8S}).",
                      "With MIG strategy 'single' the plugin advertises the slices as nvidia.com/gpu: request "
                      f"nvidia.com/gpu: 1 instead, and select nodes labelled nvidia.com/mig.strategy=single and "
                      f"nvidia.com/gpu.product={single}"]
        else:
            notes.append(f"MIG slice {p}: replace nvidia.com/gpu with the nvidia.com/mig-<profile> resource the "
                         f"device plugin advertises for this slice (kubectl describe node) ({NVIDIA_MIG_K8S})")
    return notes


def pvc(d: Deploy) -> dict[str, Any]:
    mode = "ReadWriteMany" if d.launch.multi_node else "ReadWriteOnce"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(d, f"{slug(d.model)}-cache"),
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": f"{d.cache_gib}Gi"}}}}


def deployment(d: Deploy) -> dict[str, Any]:
    container = {"name": "vllm", "image": d.image.ref, "command": ["vllm", "serve"],
                 "args": [literal(a) for a in (d.container_model, *d.args)], "env": _env(),
                 "ports": [{"name": "http", "containerPort": d.port, "protocol": "TCP"}],
                 "resources": _gpu_resources(d, d.launch.gpus_per_pod), **_security(d), **_probes(d),
                 "volumeMounts": _mounts(d)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(d, slug(d.model)),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": _selector(d)},
                     "template": {"metadata": {"labels": _selector(d)},
                                  "spec": {**_placement(d), "containers": [container], "volumes": _volumes(d)}}}}


def leader_worker_set(d: Deploy) -> dict[str, Any]:
    serve = shlex.join(["vllm", "serve", d.container_model, *d.args])
    leader_cmd = literal(ray_head_then(serve, d.launch.nodes))
    worker_cmd = ray_worker("$(LWS_LEADER_ADDRESS)")  # Kubernetes substitutes the variable LWS sets
    gpus = _gpu_resources(d, d.launch.gpus_per_pod)
    leader = {"name": "vllm-leader", "image": d.image.ref, "command": ["/bin/sh", "-c"],
              "args": [leader_cmd], "env": _env(),
              "ports": [{"name": "http", "containerPort": d.port, "protocol": "TCP"}],
              "resources": gpus, **_security(d), **_probes(d), "volumeMounts": _mounts(d)}
    worker = {"name": "vllm-worker", "image": d.image.ref, "command": ["/bin/sh", "-c"],
              "args": [worker_cmd], "env": _env(), "resources": gpus, **_security(d), "volumeMounts": _mounts(d)}
    pod = {**_placement(d), "volumes": _volumes(d)}
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": _meta(d, slug(d.model)),
            "spec": {"replicas": d.launch.groups, "leaderWorkerTemplate": {
                "size": d.launch.nodes, "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": {"labels": {**_selector(d), "role": "leader"}},
                                   "spec": {**pod, "containers": [leader]}},
                "workerTemplate": {"metadata": {"labels": {**_selector(d), "role": "worker"}},
                                   "spec": {**pod, "containers": [worker]}}}}}


def service(d: Deploy) -> dict[str, Any]:
    selector = ({**_selector(d), "role": "leader"} if d.launch.multi_node else _selector(d))
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(d, slug(d.model)),
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "http", "port": d.port, "targetPort": "http", "protocol": "TCP"}]}}


def manifests(d: Deploy) -> dict[str, str]:
    """File name (under kubernetes/) -> text."""
    head = [d.stamp.line()]
    workload = ("leaderworkerset.yaml", leader_worker_set(d)) if d.launch.multi_node else \
        ("deployment.yaml", deployment(d))
    notes = {"pvc.yaml": ["Model cache; multi-node pods share it, so it needs a ReadWriteMany storage class."
                          if d.launch.multi_node else "Model cache for the Hugging Face downloads."],
             workload[0]: [f"Hugging Face token: kubectl create secret generic {HF_SECRET['name']} "
                           f"--from-literal={HF_SECRET['key']}=$HF_TOKEN (optional for public models)",
                           *(["Needs the LeaderWorkerSet controller: https://lws.sigs.k8s.io"]
                             if d.launch.multi_node else []),
                           *([f"The model is the node directory {d.local_dir} (hostPath): it must exist on every GPU "
                              "node, or replace that volume with a PVC holding the model."] if d.local_dir else []),
                           *_hardware_notes(d), *d.notes],
             "service.yaml": [f"Reach the server at http://{slug(d.model)}:{d.port}/v1 inside the cluster."]}
    docs = {"pvc.yaml": pvc(d), workload[0]: workload[1], "service.yaml": service(d)}
    return {name: to_yaml(doc, comments=[*head, *notes[name]]) for name, doc in docs.items()}
