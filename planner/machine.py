"""The GPUs a plan is for: a named catalog GPU, a bare memory size, or the machine as probed.

Wires the probe (planner.hardware.probe, the one subprocess user) to the pure device selection in
planner.hardware.select, and turns the result into the `Hardware` a plan uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import GpuError, InputError
from planner.hardware.catalog import GpuSpec, match_smi_name, resolve_gpu
from planner.hardware.select import Selection
from planner.schemas import PlanRequest
from planner.units import GiB

if TYPE_CHECKING:
    from planner.hardware.captures import SmiGpu, SmiProbe


@dataclass(frozen=True)
class Hardware:
    """The GPUs a plan is for."""

    name: str
    spec: GpuSpec | None
    memory_bytes: int
    count: int
    nodes: int
    gpus_per_node: int
    interconnect: str
    free_bytes: int | None
    probed: bool
    warnings: tuple[str, ...] = ()
    selection: Selection | None = None  # probed devices and the ones chosen
    links: dict[tuple[int, int], str] | None = None  # topo -m cells between GPU indices
    fraction: float = 1.0  # share of bandwidth/compute (a MIG slice)

    @property
    def vendor(self) -> str | None:
        """nvidia | amd: the catalog's, else what the probe tool was (an AMD GPU the catalog lacks is still AMD)."""
        if self.spec is not None:
            return self.spec.vendor
        return self.selection.devices[0].vendor if self.selection is not None and self.selection.devices else None

    @property
    def compute_capability(self) -> float:
        cc = self.spec.compute_capability if self.spec else None
        return float(cc) if cc else 8.0


def _gpus_layout(req: PlanRequest, detected: int | None) -> tuple[int, int, int]:
    nodes = req.nodes
    if req.gpus_per_node:
        per_node = req.gpus_per_node
        count = req.gpus or per_node * nodes
    elif req.gpus:
        count = req.gpus
        per_node = -(-count // nodes)
    else:
        per_node = detected or 1
        count = per_node * nodes
    if count > per_node * nodes:
        raise InputError(f"--gpus {count} does not fit in {nodes} node(s) of {per_node} GPUs")
    if detected is not None and per_node > detected:
        raise InputError(f"--gpus-per-node {per_node} is more than the {detected} GPUs the probe shows")
    return count, nodes, per_node


def resolve_hardware(req: PlanRequest) -> Hardware:
    """GPU model, memory and count from --gpu / --vram-gib / --from-file / a live probe."""
    vram = int(req.vram_gib * GiB) if req.vram_gib else None
    if req.gpu:
        spec = resolve_gpu(req.gpu)
        count, nodes, per_node = _gpus_layout(req, None)
        return Hardware(name=spec.names[0], spec=spec, memory_bytes=vram or spec.memory_bytes, count=count,
                        nodes=nodes, gpus_per_node=per_node, interconnect=spec.interconnect.type if count > 1
                        else "none", free_bytes=None, probed=False)
    if vram and not req.from_file:
        count, nodes, per_node = _gpus_layout(req, None)
        return Hardware(name=f"unknown GPU ({req.vram_gib:g} GiB)", spec=None, memory_bytes=vram, count=count,
                        nodes=nodes, gpus_per_node=per_node, interconnect="pcie" if count > 1 else "none",
                        free_bytes=None, probed=False,
                        warnings=("GPU model unknown: no speed estimate (name it with --gpu)",))
    return probed_hardware(req, vram)[0]


def probed_hardware(req: PlanRequest, vram: int | None = None) -> list[Hardware]:
    """Hardware options from a probe (live or saved): the chosen devices first, then fallbacks (mixed GPUs)."""
    from planner.hardware import probe
    from planner.hardware.captures import SmiGpu, merge_probes
    from planner.hardware.select import choose, devices_from_probe

    files = [req.from_file] if isinstance(req.from_file, str) else list(req.from_file or [])
    smi = merge_probes(*(probe.read_capture(Path(f)) for f in files)) if files else probe.probe_local()
    source = ", ".join(files) or smi.source
    if not smi.gpus and smi.topology is not None and vram:  # a `topo -m` capture alone: GPUs from the matrix
        smi = replace(smi, gpus=tuple(SmiGpu(index=i, name="GPU (from topology)") for i in smi.topology.gpu_indices))
    if not smi.gpus:
        raise GpuError(f"{source}: no GPUs found" + (" (a topology capture alone needs --vram-gib)"
                                                     if smi.topology is not None else ""))
    match = {g.index: match_smi_name(g.name, pci_device_id=g.pci_device_id) for g in smi.gpus}
    devices = devices_from_probe(smi, match, ignore_used=req.ignore_used, fallback_memory=vram)
    if not devices:
        raise GpuError(f"{source}: {smi.gpus[0].name!r} reports no memory total and is not in the catalog; "
                       "pass --vram-gib")
    sel = choose(devices, want=req.gpus)
    links = smi.topology.links if smi.topology else None
    options = [sel] + [replace(sel, devices=alt, notes=(*sel.notes, f"the {sel.devices[0].name} group cannot hold "
                                                        "the model; using all GPUs, bounded by the smallest"),
                               alternatives=()) for alt in sel.alternatives]
    out = []
    for opt in options:
        first = opt.devices[0]
        warnings = list(opt.notes)
        if first.spec is None:
            tool = "rocm-smi/amd-smi" if first.vendor == "amd" else "nvidia-smi"
            warnings.append(f"{first.name or 'the GPU'!r} is not in the GPU catalog: using {tool}'s total memory and "
                            "no speed model")
        frees = [None if d.used_bytes is None else max(0, (vram or d.memory_bytes) - d.used_bytes)
                 for d in opt.devices]
        count = len(opt.devices)
        interconnect = smi.interconnect or (first.spec.interconnect.type if first.spec and count > 1 else "pcie")
        out.append(Hardware(
            name=first.name, spec=first.spec, memory_bytes=vram or min(d.memory_bytes for d in opt.devices),
            count=count, nodes=1, gpus_per_node=count, interconnect=interconnect if count > 1 else "none",
            free_bytes=min(frees) if all(f is not None for f in frees) else None, probed=True,
            warnings=tuple(warnings), selection=opt, links=links, fraction=min(d.fraction for d in opt.devices)))
    return out


def detect(paths: list[Path] | tuple[Path, ...] | None) -> dict[str, Any]:
    """The probe's view of the GPUs, in the contract's shape. Several captures of one machine (a table and
    its `topo -m` matrix) are merged; a capture with no GPU in it is an error, never an empty table."""
    from planner.hardware import probe
    from planner.hardware.captures import merge_probes

    files = list(paths or [])
    smi = merge_probes(*(probe.read_capture(f) for f in files)) if files else probe.probe_local()
    if not smi.gpus:
        what = ("a topology matrix shows links, not which GPUs they are or their memory: add the table "
                "(--from-file TABLE --from-file TOPO)" if smi.topology is not None or smi.p2p else "no GPU in it")
        raise GpuError(f"{', '.join(map(str, files)) or 'the probe'}: {what}")
    gpus = []
    for g in smi.gpus:
        spec = match_smi_name(g.name, pci_device_id=g.pci_device_id)
        gpus.append({"index": g.index, "name": g.name, "memory_total_bytes": g.memory_total_bytes,
                     "memory_used_bytes": g.memory_used_bytes,
                     "compute_capability": g.compute_capability or (spec.compute_capability if spec else None),
                     "catalog_id": spec.id if spec else None, "vendor": g.vendor, "healthy": g.healthy,
                     "health_problems": list(g.health_problems), "mig": _mig_view(smi, g, spec),
                     **({"compute_partition": g.compute_partition, "memory_partition": g.memory_partition,
                         "gfx_version": g.gfx_version or (spec.gfx_arch if spec else None),
                         "pci_device_id": g.pci_device_id} if g.vendor == "amd" else {})})
    return {"gpus": gpus, "driver_version": smi.driver_version, "cuda_version": smi.cuda_version,
            "rocm_version": smi.rocm_version, "interconnect": smi.interconnect, "warnings": list(smi.warnings)}


def _mig_view(smi: SmiProbe, gpu: SmiGpu, spec: GpuSpec | None) -> dict[str, Any] | None:
    """`{mode, instances: [{profile, memory_bytes, uuid}]}` where the capture shows MIG; None where it does not."""
    from planner.hardware.select import mig_slice

    instances = []
    for m in smi.mig_devices:
        if m.gpu_index != gpu.index:
            continue
        cut = mig_slice(m, spec, gpu.memory_total_bytes)
        instances.append({"profile": cut.profile if cut else m.name, "memory_bytes": cut.memory_bytes if cut else None,
                          "uuid": m.uuid})
    mode = gpu.mig_mode.lower() if gpu.mig_mode else ("enabled" if instances else None)
    return None if mode is None else {"mode": mode, "instances": instances}
