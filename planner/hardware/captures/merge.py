"""Combine captures of one machine (a table, ``-L``, ``topo -m``, ...) into one probe; earlier ones win conflicts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import replace

from planner.hardware.captures.model import MigDevice, SmiGpu, SmiProbe


def _merge_gpu(a: SmiGpu, b: SmiGpu, warnings: list[str]) -> SmiGpu:
    """``a`` with the gaps filled from ``b``; a full name beats a cut-off one."""
    values = {}
    for f in dataclasses.fields(SmiGpu):
        mine, theirs = getattr(a, f.name), getattr(b, f.name)
        values[f.name] = mine if mine not in (None, "") else theirs
    if b.name and (not a.name or (a.name_truncated and not b.name_truncated)):
        values["name"] = b.name
    if a.uuid and b.uuid and a.uuid != b.uuid:
        warnings.append(f"GPU {a.index}: the captures disagree on its UUID ({a.uuid} vs {b.uuid})")
    values["errors"] = tuple(dict.fromkeys(a.errors + b.errors))
    values["faults"] = tuple(dict.fromkeys(a.faults + b.faults))
    values["complete"] = a.complete or b.complete
    return SmiGpu(**values)


def _merge_migs(migs: Iterable[MigDevice]) -> tuple[MigDevice, ...]:
    merged: dict[tuple[object, ...], MigDevice] = {}
    for mig in migs:
        key = (
            (mig.gpu_index, mig.mig_index)
            if mig.mig_index is not None
            else (mig.gpu_index, mig.gi_id, mig.ci_id)
        )
        old = merged.get(key)
        if old is None:
            merged[key] = mig
        else:
            fill = {
                f.name: getattr(mig, f.name)
                for f in dataclasses.fields(MigDevice)
                if getattr(old, f.name) is None
            }
            merged[key] = replace(old, **fill)
    return tuple(merged.values())


def _first(values: Iterable[str | None], what: str, warnings: list[str]) -> str | None:
    seen = list(dict.fromkeys(v for v in values if v is not None))
    if len(seen) > 1:
        warnings.append(f"the captures disagree on the {what} ({', '.join(seen)}); using {seen[0]}")
    return seen[0] if seen else None


def _bus_key(bus_id: str) -> str:
    """'00000000:3B:00.0' and '0000:3b:00.0' name one device: compare bus:device.function, any case."""
    parts = bus_id.strip().lower().split(":")
    return ":".join(parts[-2:])


def _mark_lost(gpus: dict[int, SmiGpu], lost: tuple[tuple[str, str], ...], warnings: list[str]) -> dict[int, SmiGpu]:
    """A GPU nvidia-smi reported unreachable gets a fault; one no capture lists gets a warning."""
    reasons = {_bus_key(bus): reason for bus, reason in lost}
    out = {}
    for index, gpu in gpus.items():
        reason = reasons.pop(_bus_key(gpu.bus_id), None) if gpu.bus_id else None
        fault = f"nvidia-smi: {reason}"
        out[index] = replace(gpu, faults=(*gpu.faults, fault)) if reason and fault not in gpu.faults else gpu
    for bus, reason in lost:
        if _bus_key(bus) in reasons:
            warnings.append(f"nvidia-smi could not reach the GPU at {bus} ({reason}): it is not listed, so not used")
    return out


MAX_GPU_BYTES = 1 << 50  # 1 PiB: no GPU has more; a larger figure is a damaged capture, not a GPU


def _plausible(gpu: SmiGpu, warnings: list[str]) -> SmiGpu:
    """Memory figures outside (0, 1 PiB] are dropped with a warning (a zero total or a 300-digit number)."""
    fixes = {}
    for name in ("memory_total_bytes", "memory_used_bytes"):
        value = getattr(gpu, name)
        low_ok = value is None or value > 0 or name == "memory_used_bytes"
        if value is not None and (not low_ok or value < 0 or value > MAX_GPU_BYTES):
            fixes[name] = None
            shown = str(value) if len(str(value)) <= 20 else f"a {len(str(value))}-digit number"
            warnings.append(f"GPU {gpu.index}: {name.replace('_', ' ')} {shown} is not a plausible GPU figure; ignored")
    return replace(gpu, **fixes) if fixes else gpu


def merge_probes(*probes: SmiProbe) -> SmiProbe:
    """Combine captures of one machine (e.g. a table, ``-L`` and ``topo -m``); earlier ones win conflicts."""
    warnings: list[str] = [w for p in probes for w in p.warnings]
    gpus: dict[int, SmiGpu] = {}
    for probe in probes:
        for gpu in probe.gpus:
            gpus[gpu.index] = _merge_gpu(gpus[gpu.index], gpu, warnings) if gpu.index in gpus else gpu
    topology = next((p.topology for p in probes if p.topology is not None), None)
    if topology is not None and gpus and len(topology.gpu_labels) != len(gpus):
        warnings.append(f"the topology shows {len(topology.gpu_labels)} GPUs, the GPU list {len(gpus)}")
    gpus = {i: _plausible(g, warnings) for i, g in gpus.items()}
    lost = tuple(dict.fromkeys(entry for p in probes for entry in p.lost_devices))
    gpus = _mark_lost(gpus, lost, warnings)
    processes = dict.fromkeys(proc for p in probes for proc in p.processes)
    return SmiProbe(
        gpus=tuple(sorted(gpus.values(), key=lambda g: g.index)),
        driver_version=_first((p.driver_version for p in probes), "driver version", warnings),
        cuda_version=_first((p.cuda_version for p in probes), "CUDA version", warnings),
        rocm_version=_first((p.rocm_version for p in probes), "ROCm version", warnings),
        smi_version=_first((p.smi_version for p in probes), "nvidia-smi version", warnings),
        processes=tuple(processes),
        mig_devices=_merge_migs(m for p in probes for m in p.mig_devices),
        topology=topology,
        p2p=next((p.p2p for p in probes if p.p2p), {}),
        lost_devices=lost,
        formats=tuple(dict.fromkeys(f for p in probes for f in p.formats)),
        warnings=tuple(dict.fromkeys(warnings)),
        partial=any(p.partial for p in probes),
        source=" + ".join(dict.fromkeys(p.source for p in probes)) if probes else "<input>",
    )
