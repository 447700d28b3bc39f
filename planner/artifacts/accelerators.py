"""What each GPU vendor (and NVIDIA's MIG slices) needs in a deployment: image, devices, Kubernetes resources.

Pure: no I/O. Every value here is taken from the vendor's or vLLM's own documentation or source,
named next to it, so a reader can check it against the page.

AMD (ROCm)
- Image. vLLM publishes `vllm/vllm-openai-rocm` with tags `v<release>` (the CUDA image's scheme)
  since its 0.14.0 release; before, AMD published `rocm/vllm` (tags that name the ROCm and vLLM
  versions and a date) and `rocm/vllm-dev`, both now deprecated in favour of the official image.
  vLLM docs, "GPU > AMD ROCm > Pre-built images" (docs/getting_started/installation/gpu.rocm.inc.md;
  https://docs.vllm.ai/en/latest/getting_started/installation/gpu/#amd-rocm): "Prior to January 20th,
  2026 when the official docker images became available on upstream vLLM docker hub
  (https://hub.docker.com/r/vllm/vllm-openai-rocm/tags) ..."; the section was added by
  vllm-project/vllm#32580 (2026-01-19), the v0.14.0 release. AMD's tag per vLLM version:
  https://rocm.docs.amd.com/en/latest/how-to/rocm-for-ai/inference/benchmark-docker/previous-versions/vllm-history.html
- `docker run` flags, vLLM docs (same page): `--group-add=video --cap-add=SYS_PTRACE
  --security-opt seccomp=unconfined --device /dev/kfd --device /dev/dri --ipc=host`. ROCm's
  "Running ROCm Docker containers" (https://rocm.docs.amd.com/projects/install-on-linux/en/latest/how-to/docker.html)
  names /dev/kfd (compute interface) and /dev/dri (one render node per GPU) and gives the compose
  spelling (`devices:`, `security_opt:`). The `render` group: on Ubuntu 20.04 and later /dev/kfd and
  the render nodes belong to group `render`, not `video` (ROCT-Thunk-Interface README,
  https://github.com/ROCm/ROCT-Thunk-Interface; ROCm/ROCm-docker#90), and ROCm's base images create
  that group (`groupadd -g 109 render`), so both are added.
- Pinning GPUs: vLLM's ROCm platform copies HIP_VISIBLE_DEVICES into CUDA_VISIBLE_DEVICES and
  refuses the two when they differ (vllm/platforms/rocm.py, `_sync_hip_cuda_env_vars`; older
  releases: "Prevent use of clashing `{CUDA/HIP}_VISIBLE_DEVICES`"); HIP itself reads
  HIP_VISIBLE_DEVICES or CUDA_VISIBLE_DEVICES (https://rocm.docs.amd.com/projects/HIP/en/latest/reference/env_variables.html).
  ROCR_VISIBLE_DEVICES is not used: Ray, which multi-node plans run on, refuses it ("Please use
  HIP_VISIBLE_DEVICES instead of ROCR_VISIBLE_DEVICES", ray/_private/accelerators/amd_gpu.py).
- Kubernetes: AMD's device plugin exposes `amd.com/gpu` (https://github.com/ROCm/k8s-device-plugin,
  README; its vLLM example example/vllm-serve/deployment.yaml also sets seccompProfile Unconfined and
  adds SYS_PTRACE). Its node labeller labels nodes `amd.com/gpu.device-id=<PCI device id>` (and
  `amd.com/gpu.product-name`, `amd.com/gpu.family`, plus `beta.amd.com/gpu.*` forms;
  cmd/k8s-node-labeller/main.go). The product name is the board's sysfs name (e.g.
  `AMD_Instinct_MI300X_OAM`), which the catalog does not know, so nodes are selected by device id.

NVIDIA MIG
- Kubernetes: with the device plugin's MIG strategy `mixed` each slice type is its own resource,
  `nvidia.com/mig-<profile>` (k8s-device-plugin README, "MIG_STRATEGY": "resources of the form
  nvidia.com/mig-<slice_count>g.<memory_size>gb"; internal/lm/mig-strategy.go); with `single` the
  slices are `nvidia.com/gpu` on nodes GPU feature discovery labels `nvidia.com/mig.strategy=single`
  and `nvidia.com/gpu.product=<GPU>-MIG-<profile>` (e.g. `A100-SXM4-40GB-MIG-1g.5gb`,
  docs/gpu-feature-discovery/README.md, "MIG 'single' strategy"). NVIDIA GPU Operator with MIG:
  https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/gpu-operator-mig.html
- Containers and processes select a slice by its UUID: `NVIDIA_VISIBLE_DEVICES` / `--gpus device=`
  accept MIG UUIDs, and CUDA_VISIBLE_DEVICES=MIG-<UUID> (drivers R470+) selects one slice for CUDA
  (NVIDIA MIG User Guide, "CUDA Device Enumeration" and "Running CUDA Applications as Containers",
  https://docs.nvidia.com/datacenter/tesla/mig-user-guide/). `nvidia-smi -L` lists the UUIDs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import Version

NVIDIA = "nvidia"
AMD = "amd"

VLLM_DOCKER_DOCS = "https://docs.vllm.ai/en/latest/deployment/docker/"
VLLM_ROCM_DOCS = "https://docs.vllm.ai/en/latest/getting_started/installation/gpu/#amd-rocm"
AMD_VLLM_HISTORY = ("https://rocm.docs.amd.com/en/latest/how-to/rocm-for-ai/inference/benchmark-docker/"
                    "previous-versions/vllm-history.html")
AMD_DEVICE_PLUGIN = "https://github.com/ROCm/k8s-device-plugin"
NVIDIA_MIG_K8S = "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/gpu-operator-mig.html"
NVIDIA_MIG_GUIDE = "https://docs.nvidia.com/datacenter/tesla/mig-user-guide/"

# vllm/vllm-openai-rocm:v<release> exists from this vLLM release on (vllm-project/vllm#32580, 2026-01-19)
ROCM_OFFICIAL_IMAGE_SINCE = Version("0.14.0")

# AMD's rocm/vllm image per vLLM release before that (the newest tag AMD lists for the release),
# from AMD's "vLLM inference performance testing version history" (AMD_VLLM_HISTORY above).
# 0.8.5 has two tags; the 20250521 one is a 0.8.6.dev build, so the 20250513 one is used.
ROCM_VLLM_IMAGES: dict[Version, str] = {Version(v): tag for v, tag in {
    "0.6.4": "rocm/vllm:rocm6.2_mi300_ubuntu20.04_py3.9_vllm_0.6.4",
    "0.6.6": "rocm/vllm:rocm6.3.1_mi300_ubuntu22.04_py3.12_vllm_0.6.6",
    "0.7.3": "rocm/vllm:rocm6.3.1_instinct_vllm0.7.3_20250325",
    "0.8.3": "rocm/vllm:rocm6.3.1_instinct_vllm0.8.3_20250415",
    "0.8.5": "rocm/vllm:rocm6.3.1_vllm_0.8.5_20250513",
    "0.9.0.1": "rocm/vllm:rocm6.4.1_vllm_0.9.0.1_20250605",
    "0.9.1": "rocm/vllm:rocm6.4.1_vllm_0.9.1_20250715",
    "0.10.0": "rocm/vllm:rocm6.4.1_vllm_0.10.0_20250812",
    "0.10.1": "rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909",
    "0.10.2": "rocm/vllm:rocm7.0.0_vllm_0.10.2_20251006",
    "0.11.1": "rocm/vllm:rocm7.0.0_vllm_0.11.1_20251103",
    "0.11.2": "rocm/vllm:rocm7.0.0_vllm_0.11.2_20251210",
}.items()}

# Docker (vLLM docs) and Compose spellings of what a ROCm container needs
ROCM_DEVICES = ("/dev/kfd", "/dev/dri")
ROCM_GROUPS = ("video", "render")
ROCM_CAPS = ("SYS_PTRACE",)
ROCM_SECURITY_OPT = ("seccomp=unconfined",)
HIP_VISIBLE = "HIP_VISIBLE_DEVICES"

AMD_GPU_RESOURCE = "amd.com/gpu"
AMD_DEVICE_ID_LABEL = "amd.com/gpu.device-id"

def amd_device_ids(catalog_id: str | None) -> tuple[str, ...]:
    """The node labeller's amd.com/gpu.device-id values for a catalog GPU: its PCI device ids without "0x"
    (gpu_catalog/*.yaml pci_device_ids, from the labeller's amdgpu.ids table and vLLM's device map)."""
    from planner.errors import GpuError
    from planner.hardware.catalog import resolve_gpu

    try:
        spec = resolve_gpu(catalog_id) if catalog_id else None
    except GpuError:  # not a catalog GPU: no node label to select on
        return ()
    return tuple(did.removeprefix("0x") for did in spec.pci_device_ids) if spec else ()


_MIG_RESOURCE_PROFILE = re.compile(r"\d+g\.\d+gb")  # what a MIG device type is called (MIG User Guide)


@dataclass(frozen=True)
class Image:
    """The container image for a plan, and how to get it when nobody publishes one."""

    ref: str
    note: str | None = None


def release(vllm_version: str) -> Version:
    """The release an image tag names: pre/dev builds use theirs (0.11.0rc1.dev5+g12 -> 0.11.0), and a version
    given as major.minor is its .0 release (0.15 -> 0.15.0; vLLM's tags are v0.15.0, v0.9.0.1)."""
    parts = Version(vllm_version).release
    return Version(".".join(str(p) for p in (*parts, 0, 0)[:max(3, len(parts))]))


def container_image(vllm_version: str, vendor: str = NVIDIA) -> Image:
    """vLLM's OpenAI-server image for the target version on this vendor's GPUs.

    NVIDIA: vllm/vllm-openai:v<release> (vLLM docs, "Using Docker"). AMD: vllm/vllm-openai-rocm:v<release>
    from 0.14.0, AMD's rocm/vllm tag for the releases AMD published, else an image built from vLLM's
    Dockerfile.rocm at that release (the note says how)."""
    base = release(vllm_version)
    if vendor != AMD:
        return Image(f"vllm/vllm-openai:v{base}")
    if base >= ROCM_OFFICIAL_IMAGE_SINCE:
        return Image(f"vllm/vllm-openai-rocm:v{base}")
    if base in ROCM_VLLM_IMAGES:
        return Image(ROCM_VLLM_IMAGES[base],
                     note=f"vLLM {base} for ROCm is AMD's image {ROCM_VLLM_IMAGES[base]} ({AMD_VLLM_HISTORY}); "
                          f"vLLM publishes vllm/vllm-openai-rocm only from {ROCM_OFFICIAL_IMAGE_SINCE}")
    tag = f"vllm-rocm:v{base}"
    return Image(tag, note=f"no published ROCm image of vLLM {base} (vllm/vllm-openai-rocm starts at "
                           f"{ROCM_OFFICIAL_IMAGE_SINCE}; AMD's rocm/vllm tags: {AMD_VLLM_HISTORY}): build {tag} "
                           f"from vLLM's source at v{base}: git checkout v{base} && DOCKER_BUILDKIT=1 docker build "
                           f"-f docker/Dockerfile.rocm -t {tag} .  (Dockerfile.rocm at the repository root in "
                           "older releases)")


def mig_resource(profile: str | None) -> str | None:
    """`nvidia.com/mig-<profile>` (the device plugin's `mixed` strategy), when `profile` is a MIG device name."""
    return f"nvidia.com/mig-{profile}" if profile and _MIG_RESOURCE_PROFILE.fullmatch(profile) else None
