"""``nvidia-smi -L`` (``GPU 0: NAME (UUID: GPU-...)`` plus indented ``MIG ...`` lines) and vLLM/PyTorch
``collect_env.py``'s "GPU models and configuration" list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from planner.hardware.captures.model import MigDevice, SmiGpu, SmiProbe
from planner.hardware.captures.values import version

_LIST_GPU_RE = re.compile(r"GPU (\d+): (.+?)(?: \(UUID: ([^)]*)\))?\s*")
_LIST_MIG_RE = re.compile(r"\s+MIG\s+(\S+)\s+Device\s+(\d+): \(UUID: ([^)]*)\)\s*")
_ENV_GPUS_RE = re.compile(r"GPU models and configuration\s*:\s*(.*)")
_ENV_DRIVER_RE = re.compile(r"Nvidia driver version\s*:\s*(\S*)\s*")


_MIG_UUID_RE = re.compile(r"MIG-[0-9A-Za-z/-]{8,}")  # MIG-<uuid>, or MIG-GPU-<uuid>/<gi>/<ci> before driver 470


def _list_mig(match: re.Match[str], gpu_index: int) -> MigDevice:
    profile, dev, uuid = match.groups()
    old_style = re.search(r"/(\d+)/(\d+)$", uuid)  # MIG-GPU-<uuid>/<gi>/<ci> (drivers < 470)
    return MigDevice(
        gpu_index=gpu_index,
        mig_index=int(dev),
        name=profile,
        uuid=uuid if _MIG_UUID_RE.fullmatch(uuid) else None,  # it reaches CUDA_VISIBLE_DEVICES and compose
        gi_id=int(old_style.group(1)) if old_style else None,
        ci_id=int(old_style.group(2)) if old_style else None,
    )


def parse(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
    """``nvidia-smi -L`` lines and collect_env's GPU list (single-line or one GPU per line)."""
    gpus: list[SmiGpu] = []
    migs: list[MigDevice] = []
    driver = None
    env = with_uuid = False
    for i, line in enumerate(lines):
        if i in claimed:
            continue
        text = line.rstrip()
        key = _ENV_GPUS_RE.fullmatch(text)
        if key:
            env = True
            claimed.add(i)
            text = key.group(1)
        drv = _ENV_DRIVER_RE.fullmatch(text)
        if drv:
            env, driver = True, version(drv.group(1)) or driver
            claimed.add(i)
            continue
        if text.startswith("GPU Topology:"):
            env = True
        gpu = _LIST_GPU_RE.fullmatch(text)
        mig = _LIST_MIG_RE.fullmatch(text)
        if gpu:
            claimed.add(i)
            with_uuid = with_uuid or bool(gpu.group(3))
            gpus.append(SmiGpu(index=int(gpu.group(1)), name=gpu.group(2), uuid=gpu.group(3) or None))
        elif mig and gpus:
            claimed.add(i)
            migs.append(_list_mig(mig, gpus[-1].index))
    if not (gpus or env):
        return None
    formats: tuple[str, ...] = ("collect_env",) if env else ()
    if gpus and (with_uuid or not env):
        formats = (*formats, "list")
    return SmiProbe(gpus=tuple(gpus), mig_devices=tuple(migs), driver_version=driver, formats=formats)
