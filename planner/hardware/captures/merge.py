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
        formats=tuple(dict.fromkeys(f for p in probes for f in p.formats)),
        warnings=tuple(dict.fromkeys(warnings)),
        partial=any(p.partial for p in probes),
        source=" + ".join(dict.fromkeys(p.source for p in probes)) if probes else "<input>",
    )
