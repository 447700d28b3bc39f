"""The machine as probed: devices (GPUs or MIG slices), what others hold on them, which ones to use.

Pure: no I/O. Facts this module mirrors (they are vLLM/CUDA behaviour, not policy):
- a CUDA process sees one MIG instance, so a plan on MIG slices runs on exactly one slice;
- vLLM's tensor parallelism runs one identical shard per GPU: in a group of different GPUs the
  smallest memory bounds every rank (and the slowest GPU sets the pace);
- vLLM refuses to start when the free memory it finds is below its requested budget.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from planner.errors import GpuError
from planner.units import GiB

if TYPE_CHECKING:  # keep the nvidia-smi parser off the import path of plans for named GPUs
    from planner.hardware.captures import MigDevice, SmiGpu, SmiProbe
    from planner.hardware.catalog import GpuSpec

_MIG_PROFILE = re.compile(r"(\d+)g\.(\d+)gb")


@dataclass(frozen=True)
class Device:
    """One device a vLLM process can be given: a whole GPU or one MIG instance."""

    index: int  # physical GPU index
    name: str
    spec: GpuSpec | None
    memory_bytes: int  # total the device offers CUDA
    used_bytes: int | None  # held by other processes now (None: not shown)
    visible_id: str | None  # the CUDA_VISIBLE_DEVICES value that selects it
    mig_profile: str | None = None  # e.g. "2g.12gb"
    partition: str | None = None  # AMD compute partition, e.g. "CPX partition" (a HIP device of its own)
    fraction: float = 1.0  # share of the GPU's bandwidth and compute (MIG slices)
    processes: tuple[str, ...] = ()
    health_problems: tuple[str, ...] = ()  # why the probe shows the GPU failing (ERR!, lost, pages pending)
    vendor: str = "nvidia"  # as the probe tool says (nvidia-smi or rocm-smi/amd-smi), catalog entry or not
    unusable: str | None = None  # why CUDA would not see it although it is healthy (MIG on, no instance)

    @property
    def healthy(self) -> bool:
        """False when the probe shows the GPU in an error state: plans never use it."""
        return not self.health_problems

    @property
    def left_out(self) -> tuple[str, ...]:
        """Why a plan cannot use this device (empty when it can)."""
        return (*self.health_problems, *((self.unusable,) if self.unusable else ()))

    @property
    def free_bytes(self) -> int | None:
        return None if self.used_bytes is None else max(0, self.memory_bytes - self.used_bytes)

    @property
    def label(self) -> str:
        return (f"GPU {self.index} {self.name}" + (f" MIG {self.mig_profile}" if self.mig_profile else "")
                + (f" ({self.partition})" if self.partition else ""))


@dataclass(frozen=True)
class Selection:
    """The devices a plan uses, and why."""

    devices: tuple[Device, ...]
    all_devices: tuple[Device, ...]
    notes: tuple[str, ...] = ()
    alternatives: tuple[tuple[Device, ...], ...] = field(default_factory=tuple)  # other groups worth trying

    @property
    def pinned(self) -> bool:
        """True when the plan uses a subset of the machine (so the serve command must name the devices)."""
        return len(self.devices) < len(self.all_devices) or any(d.mig_profile for d in self.devices)

    @property
    def visible_devices(self) -> str | None:
        ids = [d.visible_id for d in self.devices]
        return ",".join(i for i in ids if i) if self.pinned and all(ids) else None


def _processes(smi: SmiProbe, index: int) -> tuple[str, ...]:
    out = []
    for p in smi.processes:
        if p.gpu_index == index and p.type != "G":
            size = f", {p.used_bytes / GiB:.2f} GiB" if p.used_bytes else ""
            out.append(f"{p.process_name} (pid {p.pid}{size})")
    return tuple(out)


@dataclass(frozen=True)
class MigSlice:
    """What a MIG instance offers: its memory, its profile name and its share of the GPU."""

    memory_bytes: int
    profile: str  # "2g.12gb"
    fraction: float  # of the GPU's compute and bandwidth


def mig_slice(m: MigDevice, spec: GpuSpec | None, gpu_total: int | None) -> MigSlice | None:
    """Memory, profile and share of one MIG instance; None when the capture gives no size for it."""
    total = spec.memory_bytes if spec else (gpu_total or 0)
    prof = _MIG_PROFILE.search(m.name or "")
    # `-L` listings give only the profile name: take its "Ngb" as 10^9 bytes (under the real figure,
    # e.g. 2g.12gb is 11,968 MiB), so the plan errs on the safe side.
    memory = m.memory_total_bytes or (int(prof.group(2)) * 10**9 if prof else None)
    if memory is None:
        return None
    slices = spec.mig_compute_slices if spec and spec.mig_compute_slices else None
    fraction = min(1.0, memory / total) if total else 1.0
    if prof and slices:  # a profile's compute share is its "Ng" over the GPU's slices (7 on A100/H100)
        fraction = min(1.0, int(prof.group(1)) / slices)
    profile = prof.group(0) if prof else (f"{round(fraction * slices)}g.{round(memory / GiB)}gb"
                                          if slices else f"{memory / GiB:.0f}GiB")
    return MigSlice(memory_bytes=memory, profile=profile, fraction=fraction)


_PARTITIONS = {"SPX": 1, "DPX": 2, "TPX": 3, "QPX": 4}  # AMD's modes: single, dual, triple, quad; CPX: one per XCD


def amd_partition(g: SmiGpu, spec: GpuSpec | None, card_bytes: int) -> tuple[int, float, str | None]:
    """(memory, share of the card, partition label) of one logical AMD GPU.

    A compute partition (DPX/QPX/CPX, AMD SMI partitioning guide) is a HIP device of its own holding its share of
    the card: KFD sizes a CPX partition of an MI300X at 206,141,652,992 / 8 bytes. rocm-smi and amd-smi may print
    the whole card's memory for every partition (AMD: "a known issue ... on partitioned GPUs", ROCm/amdsmi#97), so
    the printed figure is trusted only when it is smaller (an SR-IOV VF, or a tool that prints the share).
    """
    mode = g.compute_partition
    count = _PARTITIONS.get(mode or "") or (spec.xcds if mode == "CPX" and spec and spec.xcds else None)
    if spec is None:  # no catalog card size: the printed figure (whole card or share, the tool does not say)
        return card_bytes, 1 / count if count else 1.0, f"{mode} partition" if count and count > 1 else None
    memory = card_bytes // count if count else card_bytes
    if g.memory_total_bytes and g.memory_total_bytes < memory:
        memory = g.memory_total_bytes
    fraction = 1 / count if count else min(1.0, memory / card_bytes)
    label = f"{mode} partition" if count and count > 1 else None
    return memory, fraction, label


def devices_from_probe(smi: SmiProbe, match: dict[int, GpuSpec | None], ignore_used: bool = False,
                       fallback_memory: int | None = None) -> list[Device]:
    """Whole GPUs, or their MIG instances where MIG is on. `match` maps GPU index -> catalog entry;
    `fallback_memory` (--vram-gib) stands in where neither the capture nor the catalog gives a size."""
    out: list[Device] = []
    for g in smi.gpus:
        spec = match.get(g.index)
        if not g.name and spec is not None:  # AMD tools may print only the PCI device id the catalog matched
            g = replace(g, name=spec.names[0])
        migs = [m for m in smi.mig_devices if m.gpu_index == g.index]
        if not migs and g.mig_mode == "Enabled":  # CUDA enumerates MIG instances only, and this GPU shows none
            out.append(Device(index=g.index, name=g.name, spec=spec, memory_bytes=g.memory_total_bytes or 0,
                              used_bytes=None, visible_id=None, health_problems=g.health_problems,
                              unusable="MIG is enabled but the capture lists no MIG instance; CUDA sees only "
                                       "instances (create them with `nvidia-smi mig -cgi ... -C`, list them with "
                                       "`nvidia-smi -L`)"))
            continue
        if migs:
            for m in migs:
                mslice = mig_slice(m, spec, g.memory_total_bytes)
                if mslice is None:
                    continue
                out.append(Device(index=g.index, name=g.name, spec=spec, memory_bytes=mslice.memory_bytes,
                                  used_bytes=None if ignore_used else m.memory_used_bytes,
                                  visible_id=m.uuid, mig_profile=mslice.profile, fraction=mslice.fraction,
                                  health_problems=g.health_problems))
            continue
        memory = spec.memory_bytes if spec else (g.memory_total_bytes or fallback_memory)
        if memory is None:
            continue
        fraction, partition = 1.0, None
        if g.vendor == "amd":
            memory, fraction, partition = amd_partition(g, spec, memory)
        out.append(Device(index=g.index, name=g.name, spec=spec, memory_bytes=memory,
                          used_bytes=None if ignore_used else g.memory_used_bytes, visible_id=str(g.index),
                          processes=_processes(smi, g.index), health_problems=g.health_problems,
                          fraction=fraction, partition=partition, vendor=g.vendor))
    return out


def sick_list(devices: list[Device]) -> str:
    """'GPU 2 NVIDIA A100 80GB PCIe: fan read ERR!; GPU 3 ...' (one entry per physical GPU)."""
    seen = dict.fromkeys(f"GPU {d.index} {d.name}: {'; '.join(d.left_out)}" for d in devices)
    return "; ".join(seen)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def choose(devices: list[Device], *, want: int | None) -> Selection:
    """Pick the devices to plan for: one MIG slice; else a homogeneous group; else all, bounded by the smallest."""
    if not devices:
        raise GpuError("the probe shows no usable GPU (no memory figures and not in the catalog)")
    all_devs = tuple(devices)
    sick = [d for d in devices if d.left_out]
    devices = [d for d in devices if not d.left_out]
    if not devices:
        raise GpuError(f"no GPU the probe shows can be used: {sick_list(sick)}")
    if sick:
        picked = choose(devices, want=want)
        note = f"left out: {sick_list(sick)}"
        if any(not d.healthy for d in sick):
            note += " (a tensor-parallel group over a failing GPU fails at start-up or mid-run)"
        return replace(picked, all_devices=all_devs, notes=(note, *picked.notes))
    migs = [d for d in devices if d.mig_profile]
    if migs:
        if want and want > 1:
            raise GpuError(f"--gpus {want}: the capture shows MIG slices, and a vLLM process sees exactly one MIG "
                           "device (CUDA exposes one MIG instance per process), so tensor or pipeline parallelism "
                           "across slices is impossible")
        best = max(migs, key=lambda d: (d.memory_bytes, -d.index))
        note = (f"MIG is enabled: planning on one slice, {best.label} ({_gib(best.memory_bytes)}, "
                f"{best.fraction:.0%} of the GPU's compute and bandwidth); a vLLM process sees one MIG device, "
                "so parallelism across slices is impossible")
        if not best.visible_id:
            note += "; the capture has no MIG UUID (run `nvidia-smi -L` to find it for CUDA_VISIBLE_DEVICES)"
        return Selection(devices=(best,), all_devices=all_devs, notes=(note,))
    groups: dict[tuple[str, int], list[Device]] = {}
    for d in devices:
        groups.setdefault((d.name, d.memory_bytes), []).append(d)
    if len(groups) == 1:
        chosen = devices[: want or len(devices)]
        return Selection(devices=tuple(chosen), all_devices=all_devs)
    ranked = sorted(groups.values(), key=lambda g: (-g[0].memory_bytes * len(g), -g[0].memory_bytes, g[0].index))
    desc = " + ".join(f"{len(g)} x {g[0].name} ({_gib(g[0].memory_bytes)})" for g in ranked)
    smallest = min(d.memory_bytes for d in devices)
    best = tuple(ranked[0][: want or len(ranked[0])])
    bounded = tuple(sorted(devices, key=lambda d: d.index)[: want or len(devices)])
    note = (f"mixed GPUs: {desc}. Tensor parallelism needs matching devices: a group of all {len(devices)} "
            f"would be bounded by the smallest ({_gib(smallest)} per GPU) and the slowest GPU. Planning for the "
            f"{len(best)} x {best[0].name} (the most memory in one homogeneous group)")
    return Selection(devices=best, all_devices=all_devs, notes=(note,), alternatives=(bounded,))


@dataclass(frozen=True)
class Placement:
    """Where a tensor-parallel group sits, and over which link its GPUs talk."""

    gpus: list[int]
    nvlink: bool | None  # True: every pair NVLink; False: some pair is not; None: no topology / no group
    note: str = ""


def nvlink_group(selection: Selection, size: int, links: dict[tuple[int, int], str] | None) -> Placement:
    """GPU indices for a tensor-parallel group of `size`, all pairwise joined by NVLink when possible."""
    idx = [d.index for d in selection.devices if not d.mig_profile]
    if size <= 1 or len(idx) < size or not links:
        return Placement(gpus=idx[:size], nvlink=None)

    def link(a: int, b: int) -> str:
        return links.get((a, b)) or links.get((b, a)) or ""

    for combo in itertools.combinations(idx, size):
        if all(link(a, b).startswith("NV") for a, b in itertools.combinations(combo, 2)):
            kinds = sorted({link(a, b) for a, b in itertools.combinations(combo, 2)})
            return Placement(gpus=list(combo), nvlink=True, note=f"tensor-parallel group on GPUs {list(combo)}, "
                             f"joined by NVLink ({', '.join(kinds)})")
    kinds = sorted({link(a, b) or "?" for a, b in itertools.combinations(idx[:size], 2)})
    return Placement(gpus=idx[:size], nvlink=False, note=f"no {size} GPUs are all joined by NVLink; the "
                     f"tensor-parallel group on GPUs {idx[:size]} talks over {', '.join(kinds)} (PCIe/system)")
