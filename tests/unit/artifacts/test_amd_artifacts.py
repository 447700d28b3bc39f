"""Issue 20: `generate` for AMD GPUs writes ROCm artifacts (image, devices, groups, resources), not CUDA ones.

Every expected value is the documented one; the page is named next to each assertion. Driven through the
CLI (`generate`), and every file is checked with the same validators as tests/cli/test_generate.py
(Compose Specification schema and `docker-compose config`, kubernetes-validate, the LeaderWorkerSet CRD).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cli.test_generate import assert_valid_compose, assert_valid_kubernetes, serve_commands
from tests.clirun import run
from tests.vllm_parser import DUMPS, assert_vllm_accepts

MI300X = ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "MI300X"]
# Llama-3.1-405B (810 GB of bf16 weights) does not fit 4 x MI300X (768 GB): a replica spans 2 nodes (Ray)
MI300X_2_NODES = ["--model", "meta-llama/Llama-3.1-405B", "--gpu", "MI300X", "--nodes", "2", "--gpus-per-node", "4"]

VLLM_ROCM_DOCS = "https://docs.vllm.ai/en/latest/getting_started/installation/gpu/#amd-rocm"


def _generate(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "deploy"
    rc, _, err = run("generate", *args, "-o", str(out))
    assert rc == 0, err
    return out


def _all_valid(out: Path, version: str) -> None:
    assert_valid_compose(out / "docker-compose.yaml")
    for f in sorted((out / "kubernetes").glob("*.yaml")):
        assert_valid_kubernetes(f)
    for argv in serve_commands(out):
        if (DUMPS / f"{version}.json").is_file():  # vLLM's own parser, for the versions with a dump
            assert_vllm_accepts(argv, version)
    for script in ("serve_command.sh", "benchmark.sh"):
        assert subprocess.run(["bash", "-n", str(out / script)], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def mi300x(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("amd"), *MI300X)


def test_compose_runs_the_rocm_image_with_the_documented_devices_and_groups(mi300x: Path) -> None:
    _all_valid(mi300x, "0.33.0")
    text = (mi300x / "docker-compose.yaml").read_text()
    svc = yaml.safe_load(text)["services"]["vllm"]
    # vLLM publishes vllm/vllm-openai-rocm, tags v<release> like the CUDA image, from 0.14.0 on:
    # https://docs.vllm.ai/en/latest/getting_started/installation/gpu/#amd-rocm ("Pre-built images";
    # https://hub.docker.com/r/vllm/vllm-openai-rocm/tags)
    assert svc["image"] == "vllm/vllm-openai-rocm:v0.33.0"
    # vLLM's ROCm `docker run`: --device /dev/kfd --device /dev/dri --group-add=video --ipc=host
    # --cap-add=SYS_PTRACE --security-opt seccomp=unconfined (VLLM_ROCM_DOCS); the same in Compose's spelling
    # (devices/group_add/cap_add/security_opt, https://docs.docker.com/reference/compose-file/services/)
    assert svc["devices"] == ["/dev/kfd", "/dev/dri"]
    # `render`: /dev/kfd and the render nodes belong to group render on Ubuntu >= 20.04
    # (https://github.com/ROCm/ROCT-Thunk-Interface README; https://github.com/ROCm/ROCm-docker/issues/90)
    assert svc["group_add"] == ["video", "render"]
    assert svc["cap_add"] == ["SYS_PTRACE"]
    assert svc["security_opt"] == ["seccomp=unconfined"]
    assert svc["ipc"] == "host"
    # no NVIDIA device reservation (`driver: nvidia` is the NVIDIA Container Toolkit's)
    assert "deploy" not in svc and "nvidia" not in text.lower()
    assert VLLM_ROCM_DOCS in text  # the file says where its flags come from


def test_kubernetes_requests_amd_gpus_on_nodes_the_amd_labeller_marks(mi300x: Path) -> None:
    text = (mi300x / "kubernetes" / "deployment.yaml").read_text()
    dep = yaml.safe_load(text)
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "vllm/vllm-openai-rocm:v0.33.0"
    # AMD's device plugin exposes amd.com/gpu (https://github.com/ROCm/k8s-device-plugin README; its vLLM example
    # example/vllm-serve/deployment.yaml requests it in limits and requests)
    assert c["resources"] == {"limits": {"amd.com/gpu": 1}, "requests": {"amd.com/gpu": 1}}
    # AMD's vLLM example runs the container with seccompProfile Unconfined and SYS_PTRACE (the docker flags above)
    assert c["securityContext"] == {"seccompProfile": {"type": "Unconfined"}, "capabilities": {"add": ["SYS_PTRACE"]}}
    # AMD's node labeller writes amd.com/gpu.device-id=<PCI id> (k8s-device-plugin cmd/k8s-node-labeller/main.go);
    # MI300X is 74a1 (its amdgpu.ids table, and vllm/platforms/rocm.py _ROCM_DEVICE_ID_NAME_MAP: 0x74a1)
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    expr = term["matchExpressions"][0]
    assert (expr["key"], expr["operator"]) == ("amd.com/gpu.device-id", "In") and "74a1" in expr["values"]
    # nothing NVIDIA: no nvidia.com/gpu resource, no nvidia.com/gpu.product selector, no nvidia toleration
    assert "nvidia" not in text.lower() and "tolerations" not in pod and "nodeSelector" not in pod


def test_plan_json_manifest_and_readme_record_the_vendor_and_its_image(mi300x: Path) -> None:
    plan = json.loads((mi300x / "plan.json").read_text())
    assert plan["hardware"]["vendor"] == "amd" and plan["hardware"]["catalog_id"] == "mi300x"
    manifest = json.loads((mi300x / ".vllm-planner.json").read_text())
    assert (manifest["vendor"], manifest["image"]) == ("amd", "vllm/vllm-openai-rocm:v0.33.0")
    assert "vllm/vllm-openai-rocm:v0.33.0" in (mi300x / "README.md").read_text()
    # the profile replays to the same AMD plan (it records the GPU as its catalog id)
    rc, out, err = run("plan", "--profile", str(mi300x / "profile.yaml"), "--json")
    assert rc == 0, err
    assert json.loads(out)["hardware"]["vendor"] == "amd" and json.loads(out)["plan_id"] == plan["plan_id"]


@pytest.mark.parametrize(("version", "image"), [
    # AMD's rocm/vllm tag for vLLM 0.8.5 (the 20250521 one is a 0.8.6.dev build):
    # https://rocm.docs.amd.com/en/latest/how-to/rocm-for-ai/inference/benchmark-docker/previous-versions/vllm-history.html
    ("0.8.5", "rocm/vllm:rocm6.3.1_vllm_0.8.5_20250513"),
    # vllm/vllm-openai-rocm starts with vLLM 0.14.0 (vllm-project/vllm#32580, docs: "Prior to January 20th, 2026
    # when the official docker images became available on upstream vLLM docker hub")
    ("0.19.0", "vllm/vllm-openai-rocm:v0.19.0"),
    ("0.15", "vllm/vllm-openai-rocm:v0.15.0"),  # Docker tags name the full release: v0.15.0
])
def test_the_rocm_image_follows_the_target_version(tmp_path: Path, version: str, image: str) -> None:
    out = _generate(tmp_path, "--model", "Qwen/Qwen3-8B", "--gpu", "MI300X", "--vllm-version", version)
    target = json.loads((out / "plan.json").read_text())["vllm_version"]
    assert yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]["vllm"]["image"] == image
    dep = yaml.safe_load((out / "kubernetes" / "deployment.yaml").read_text())
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image
    _all_valid(out, target)


def test_a_version_without_a_published_rocm_image_says_how_to_build_it() -> None:
    from planner.artifacts.accelerators import container_image

    # 0.11.0: not in AMD's rocm/vllm history and before vllm/vllm-openai-rocm (0.14.0): built from vLLM's
    # Dockerfile.rocm (VLLM_ROCM_DOCS, "Build image from source")
    img = container_image("0.11.0", "amd")
    assert img.ref == "vllm-rocm:v0.11.0"
    assert img.note and "docker/Dockerfile.rocm" in img.note and "git checkout v0.11.0" in img.note
    # AMD's image for a release AMD published (vllm-history.html above), and the official one after 0.14.0
    assert container_image("0.10.1", "amd").ref == "rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909"
    assert container_image("0.14.0rc2.dev3+gabc", "amd").ref == "vllm/vllm-openai-rocm:v0.14.0"
    # NVIDIA is unchanged: vllm/vllm-openai:v<release> (https://docs.vllm.ai/en/latest/deployment/docker/)
    assert container_image("0.11.0").ref == "vllm/vllm-openai:v0.11.0" and container_image("0.11.0").note is None


def test_multi_node_amd_plans_run_ray_on_rocm_containers(tmp_path: Path) -> None:
    out = _generate(tmp_path, *MI300X_2_NODES)
    _all_valid(out, "0.33.0")
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]
    for name in ("vllm-head", "vllm-worker"):
        svc = compose[name]
        assert svc["image"] == "vllm/vllm-openai-rocm:v0.33.0" and svc["network_mode"] == "host"
        # VLLM_ROCM_DOCS flags on both Ray nodes, and no NVIDIA reservation
        assert (svc["devices"], svc["group_add"]) == (["/dev/kfd", "/dev/dri"], ["video", "render"])
        assert svc["security_opt"] == ["seccomp=unconfined"] and "deploy" not in svc
    lws = yaml.safe_load((out / "kubernetes" / "leaderworkerset.yaml").read_text())
    t = lws["spec"]["leaderWorkerTemplate"]
    assert t["size"] == 2
    for key in ("leaderTemplate", "workerTemplate"):
        pod = t[key]["spec"]
        c = pod["containers"][0]
        # amd.com/gpu per node (AMD device plugin), ROCm image, nodes by the labeller's device id
        assert c["resources"]["limits"] == {"amd.com/gpu": 4} and c["image"] == "vllm/vllm-openai-rocm:v0.33.0"
        assert "tolerations" not in pod and "affinity" in pod
    assert "nvidia" not in (out / "kubernetes" / "leaderworkerset.yaml").read_text().lower()


def test_pinned_amd_gpus_use_hip_visible_devices(tmp_path: Path) -> None:
    """A plan that picked GPUs 2,3 of an AMD machine: HIP_VISIBLE_DEVICES, which vLLM's ROCm platform copies into
    CUDA_VISIBLE_DEVICES (vllm/platforms/rocm.py `_sync_hip_cuda_env_vars`; HIP reads HIP_VISIBLE_DEVICES,
    https://rocm.docs.amd.com/projects/HIP/en/latest/reference/env_variables.html). Not ROCR_VISIBLE_DEVICES: Ray
    refuses it ("Please use HIP_VISIBLE_DEVICES instead of ROCR_VISIBLE_DEVICES", ray/_private/accelerators/amd_gpu.py).
    No AMD capture format reaches the planner yet, so the plan is an MI300X plan given that pin."""
    from planner.app import plan_with_context
    from planner.artifacts.bundle import render_bundle
    from planner.artifacts.serve import serve_command
    from planner.schemas import PlanRequest

    req = PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="MI300X", gpus=2)
    plan, ctx = plan_with_context(req)
    bare = plan.serve_command.split(" ", 2)[2]  # "vllm serve MODEL ..." -> "MODEL ..."
    pinned = plan.model_copy(update={
        "hardware": plan.hardware.model_copy(update={"visible_devices": "2,3"}),
        "serve_command": serve_command(bare.split()[0], bare.split()[1:], visible_devices="2,3", vendor="amd")})
    assert pinned.serve_command.startswith("HIP_VISIBLE_DEVICES=2,3 vllm serve ")
    files = render_bundle(pinned, req, ctx.run.params, base=tmp_path)
    assert "exec env HIP_VISIBLE_DEVICES=2,3 vllm serve" in files["serve_command.sh"]
    assert "CUDA_" not in files["serve_command.sh"]
    svc = yaml.safe_load(files["docker-compose.yaml"])["services"]["vllm"]
    assert svc["environment"]["HIP_VISIBLE_DEVICES"] == "2,3" and "deploy" not in svc
    (tmp_path / "docker-compose.yaml").write_text(files["docker-compose.yaml"])
    assert_valid_compose(tmp_path / "docker-compose.yaml")
