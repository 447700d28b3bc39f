"""What a GPU probe reports, whatever tool printed it: GPUs, MIG instances, processes, a topology.

A value of None means "not shown", never zero. Memory is what the tool prints (nvidia-smi: MiB x 1,048,576),
not what CUDA reports as the device total: an H100 SXM shows 81,559 MiB to nvidia-smi and 85,017,493,504 bytes
to CUDA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

MIB = 1_048_576
"""Bytes in one MiB: nvidia-smi prints memory in MiB."""

PROBE_QUERY_FIELDS: tuple[str, ...] = (
    "index",
    "name",
    "memory.total",
    "memory.used",
    "compute_cap",
    "uuid",
    "pci.bus_id",
    "driver_version",
    "mig.mode.current",
)
"""The ``--query-gpu`` fields the live probe asks for, in order (a headerless row of 9 cells uses them)."""

Interconnect = Literal["nvlink", "pcie"]
Vendor = Literal["nvidia", "amd"]


# ----------------------------------------------------------------------------------------------- model


@dataclass(frozen=True, kw_only=True)
class SmiProcess:
    """One row of the ``Processes:`` box (or of ``--query-compute-apps``)."""

    gpu_index: int | None
    pid: int | None
    process_name: str
    used_bytes: int | None  # None when nvidia-smi prints N/A (WDDM) or nothing
    type: str | None  # C, G, C+G, M, M+C
    gi_id: int | None = None
    ci_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class MigDevice:
    """One MIG instance, from a table's ``MIG devices:`` box, ``-L`` or ``-q -x``."""

    gpu_index: int
    mig_index: int | None = None
    gi_id: int | None = None
    ci_id: int | None = None
    name: str | None = None  # profile, e.g. "2g.12gb" (only -L prints it)
    uuid: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class SmiGpu:
    """One physical GPU as its vendor's tool (nvidia-smi, rocm-smi, amd-smi) shows it; ``None`` means "not shown".

    ``name`` is as printed: it may be cut short ("Tesla V100-SXM2...", see :attr:`name_truncated`) and is
    ``""`` when the capture has no name column. Memory is nvidia-smi's figure (MiB x 1,048,576), not the
    total CUDA reports for the device (which is larger: 81,559 MiB vs 85,017,493,504 bytes on an H100 SXM).
    ``compute_capability`` is set only when the input prints
    it (``--query-gpu=compute_cap``); look the name up in the GPU catalog otherwise.
    """

    index: int
    name: str
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    compute_capability: str | None = None
    uuid: str | None = None
    bus_id: str | None = None
    mig_mode: str | None = None  # "Enabled" | "Disabled" | None (N/A, ERR!, not printed)
    persistence_mode: str | None = None  # "On" | "Off"
    driver_model: str | None = None  # "WDDM" | "TCC" (Windows / WSL tables)
    fan_percent: int | None = None
    temperature_c: int | None = None
    performance_state: str | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    utilization_percent: int | None = None
    compute_mode: str | None = None
    errors: tuple[str, ...] = ()  # fields nvidia-smi printed as ERR!, e.g. ("fan", "mig_mode")
    faults: tuple[str, ...] = ()  # why the tool shows the GPU as failing, e.g. "GPU is lost", "retired pages pending"
    complete: bool = True  # False when the capture was cut inside this GPU's row
    vendor: Vendor = "nvidia"
    compute_partition: str | None = None  # AMD: SPX | DPX | QPX | CPX (a CPX MI300X shows 8 logical GPUs)
    memory_partition: str | None = None  # AMD: NPS1 | NPS2 | NPS4 ...
    gfx_version: str | None = None  # AMD: the LLVM target the tool prints, e.g. "gfx942"
    pci_device_id: str | None = None  # AMD: the PCI device id ("0x74a1") where the tool prints it instead of a name

    @property
    def name_truncated(self) -> bool:
        """True when nvidia-smi cut the name to fit its column (ends in "...")."""
        return self.name.endswith("...")

    @property
    def healthy(self) -> bool:
        """False when the tool shows the GPU failing: a fault, or a reading other than MIG mode as ERR!.

        MIG mode alone showing ERR! means "unknown" (e.g. a newer nvidia-smi over an older driver).
        """
        return not self.health_problems

    @property
    def health_problems(self) -> tuple[str, ...]:
        """Why the GPU is unhealthy, in words ("fan, power read ERR!", "GPU is lost"); empty when healthy."""
        bad = [e for e in self.errors if e != "mig_mode"]
        return (*self.faults, *((f"{', '.join(bad)} read ERR!",) if bad else ()))


def gpu_number(label: str) -> int | None:
    match = re.fullmatch(r"GPU(\d+)", label)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Topology:
    """An ``nvidia-smi topo -m`` matrix.

    ``links`` maps (GPU index, GPU index) to the printed cell: "X", "NV12", "SYS", "NODE", "PHB", "PXB",
    "PIX". Affinity tuples run parallel to ``gpu_labels``; ``None`` where empty, N/A or cut off.
    """

    gpu_labels: tuple[str, ...]
    links: dict[tuple[int, int], str]
    nic_labels: tuple[str, ...] = ()
    nic_names: dict[str, str] = field(default_factory=dict)  # from the "NIC Legend": NIC0 -> mlx5_0
    cpu_affinity: tuple[str | None, ...] = ()
    numa_affinity: tuple[str | None, ...] = ()

    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(i for i in (gpu_number(label) for label in self.gpu_labels) if i is not None)

    def link(self, a: int, b: int) -> str | None:
        """The link type between GPUs ``a`` and ``b`` (either direction), or None if not shown."""
        return self.links.get((a, b)) or self.links.get((b, a))

    def nvlink_pairs(self) -> tuple[tuple[int, int], ...]:
        """GPU pairs (low, high) joined by NVLink (an ``NV#`` cell)."""
        idx = self.gpu_indices
        return tuple(
            (a, b)
            for n, a in enumerate(idx)
            for b in idx[n + 1 :]
            if (self.link(a, b) or "").startswith("NV")
        )

    @property
    def interconnect(self) -> Interconnect | None:
        """ "nvlink" if every shown GPU pair is NV#, "pcie" if some pair is not, None with < 2 GPUs."""
        idx = self.gpu_indices
        known = [self.link(a, b) for n, a in enumerate(idx) for b in idx[n + 1 :]]
        shown = [cell for cell in known if cell is not None]
        if not shown:
            return None
        return "nvlink" if all(cell.startswith("NV") for cell in shown) else "pcie"


@dataclass(frozen=True, kw_only=True)
class SmiProbe:
    """Everything recognised in one or more probe captures (nvidia-smi, rocm-smi, amd-smi)."""

    gpus: tuple[SmiGpu, ...] = ()
    driver_version: str | None = None  # from "Driver Version" / "KMD Version", never from "NVIDIA-SMI"
    cuda_version: str | None = None  # the driver's CUDA version; None for N/A, ERR! or not printed
    rocm_version: str | None = None  # AMD captures: the ROCm (or amd-smi's ROCm) version where printed
    smi_version: str | None = None
    processes: tuple[SmiProcess, ...] = ()
    mig_devices: tuple[MigDevice, ...] = ()
    topology: Topology | None = None
    p2p: dict[tuple[int, int], str] = field(default_factory=dict)  # topo -p2p cells: OK, GNS, CNS...
    lost_devices: tuple[tuple[str, str], ...] = ()  # (bus id, reason) of GPUs nvidia-smi could not reach
    formats: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    partial: bool = False  # the capture looks cut off
    source: str = "<input>"

    @property
    def interconnect(self) -> Interconnect | None:
        """ "nvlink" when every GPU pair is NV#, "pcie" when some is not, None without a topology."""
        return self.topology.interconnect if self.topology is not None else None
