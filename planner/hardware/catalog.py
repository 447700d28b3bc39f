"""GPU catalog: gpu_catalog/*.yaml -> validated GpuSpec, name/alias resolution.

Every number in the catalog carries a source. Python holds no GPU figures.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from planner.errors import GpuError
from planner.suggest import closest, did_you_mean

Dtype = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp6", "fp4", "int4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where a figure comes from."""

    fields: list[str] = Field(description="Catalog fields this source backs, e.g. ['memory_bytes'].")
    url: str | None = Field(default=None, description="Datasheet or page URL.")
    note: str | None = Field(default=None, description="What the source says, or how the value was derived.")


class Interconnect(_Strict):
    """How GPUs of this model talk to each other inside one node."""

    type: Literal["nvlink", "pcie", "infinity-fabric", "nvlink-c2c"] = Field(
        description="Best GPU-to-GPU link this SKU has inside a node."
    )
    bandwidth_bytes_per_s: float = Field(
        gt=0,
        description="Total GPU-to-GPU bandwidth per GPU, both directions summed (NVLink) or PCIe x16 bidirectional.",
    )
    pcie_gen: int | None = Field(default=None, ge=1, le=6, description="Host PCIe generation.")


PCIE_LANE_BYTES_PER_S = {1: 0.25e9, 2: 0.5e9, 3: 1e9, 4: 2e9, 5: 4e9, 6: 8e9}
"""Nominal PCIe rate per lane and direction by generation (PCI-SIG: 2.5/5/8/16/32/64 GT/s; the 8b/10b, 128b/130b
and FLIT overheads are left to the measured-efficiency pack params, so x16 Gen5 is 64 GB/s per direction)."""


class HostLink(_Strict):
    """How one GPU reaches host (CPU) memory: what `--cpu-offload-gb` weights cross on every forward."""

    type: Literal["pcie", "nvlink-c2c"] = Field(description="pcie, or NVLink-C2C on Grace superchips and GB10.")
    pcie_gen: int | None = Field(default=None, ge=1, le=6, description="PCIe generation (pcie only).")
    lanes: int | None = Field(default=None, description="PCIe lanes the GPU links with: 1, 2, 4, 8 or 16 (pcie only).")
    bandwidth_bytes_per_s: float = Field(
        gt=0, description="Nominal host-to-device bandwidth, ONE direction (datasheets quote PCIe both ways summed).")

    @model_validator(mode="after")
    def _consistent(self) -> HostLink:
        if self.type != "pcie":
            if self.pcie_gen is not None or self.lanes is not None:
                raise ValueError(f"{self.type} host link takes no pcie_gen or lanes")
            return self
        if self.pcie_gen is None or self.lanes is None:
            raise ValueError("a pcie host link needs pcie_gen and lanes")
        if self.lanes not in (1, 2, 4, 8, 16):
            raise ValueError(f"lanes must be 1, 2, 4, 8 or 16, got {self.lanes}")
        nominal = PCIE_LANE_BYTES_PER_S[self.pcie_gen] * self.lanes
        if abs(self.bandwidth_bytes_per_s - nominal) > 0.05 * nominal:
            raise ValueError(f"bandwidth_bytes_per_s {self.bandwidth_bytes_per_s:.4g} does not match PCIe Gen"
                             f"{self.pcie_gen} x{self.lanes} ({nominal:.4g} B/s per direction)")
        return self


class GpuSpec(_Strict):
    """One GPU model as vLLM users run it."""

    id: str = Field(description="Stable kebab-case id, e.g. h100-sxm-80gb.")
    vendor: Literal["nvidia", "amd"] = Field(description="GPU vendor.")
    names: list[str] = Field(min_length=1, description="Names exactly as nvidia-smi (or rocm-smi) prints them.")
    aliases: list[str] = Field(default_factory=list, description="Short names users type (--gpu H100).")
    family: str = Field(description="Architecture family: volta, turing, ampere, ada, hopper, blackwell, cdna3, ...")
    compute_capability: str | None = Field(
        default=None,
        description="CUDA compute capability, e.g. '9.0'; on ROCm the (major, minor) torch and vLLM report for the "
                    "gfx target (gfx90a -> '9.0', gfx942 -> '9.4', gfx950 -> '9.5').")
    gfx_arch: str | None = Field(
        default=None, description="AMD only: the LLVM gfx target (gcnArchName without features), e.g. 'gfx942'.")
    pci_device_ids: list[str] = Field(
        default_factory=list,
        description="AMD only: PCI device ids ('0x74a1', lower case) rocm-smi/amd-smi print where they print no name, "
                    "and AMD's Kubernetes node labeller writes as amd.com/gpu.device-id.")
    xcds: int | None = Field(
        default=None, ge=1, le=16,
        description="AMD only: accelerator complex dies; a CPX compute partition is one of them (MI300X: 8).")
    memory_bytes: int = Field(gt=0, description="Total memory CUDA reports (torch.cuda.mem_get_info()[1]).")
    memory_bytes_measured: bool = Field(description="True when memory_bytes was measured, not derived.")
    nvidia_smi_total_mib: int | None = Field(default=None, gt=0, description="'Total' memory as nvidia-smi prints it.")
    hbm_bandwidth_bytes_per_s: float = Field(gt=0, description="Peak device-memory bandwidth, bytes/s.")
    peak_tflops: dict[Dtype, float] = Field(description="Dense (no sparsity) peak tensor TFLOP/s per dtype.")
    interconnect: Interconnect
    host_link: HostLink | None = Field(
        default=None, description="GPU <-> host memory link (CPU weight offload streams over it); None: unknown.")
    fp8_supported: bool = Field(description="Hardware FP8 tensor cores (Ada, Hopper, Blackwell, CDNA3).")
    fp4_supported: bool = Field(description="Hardware FP4 tensor cores (Blackwell).")
    form_factor: str = Field(description="sxm, pcie, nvl, superchip, oam, consumer, ...")
    tdp_watts: int | None = Field(default=None, gt=0, description="Board power.")
    mig_compute_slices: int | None = Field(
        default=None, ge=1, le=8, description="MIG compute slices of the full GPU (A30: 4; A100/H100/H200/B200: 7)."
    )
    sources: list[Source] = Field(min_length=1, description="Provenance of the figures above.")

    @model_validator(mode="after")
    def _host_link_matches_interconnect(self) -> GpuSpec:
        link, ic = self.host_link, self.interconnect
        if link is not None and link.type == "pcie" and ic.pcie_gen is not None and link.pcie_gen != ic.pcie_gen:
            raise ValueError(f"host_link.pcie_gen {link.pcie_gen} differs from interconnect.pcie_gen {ic.pcie_gen}")
        return self

    @field_validator("compute_capability")
    @classmethod
    def _cc(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+\.\d+", v):
            raise ValueError(f"compute_capability must look like '9.0', got {v!r}")
        return v

    @field_validator("pci_device_ids")
    @classmethod
    def _dids(cls, v: list[str]) -> list[str]:
        for did in v:
            if not re.fullmatch(r"0x[0-9a-f]{4}", did):
                raise ValueError(f"pci_device_ids must look like '0x74a1' (lower case), got {did!r}")
        return v

    @field_validator("gfx_arch")
    @classmethod
    def _gfx(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"gfx[0-9a-f]{3,4}", v):
            raise ValueError(f"gfx_arch must look like 'gfx942', got {v!r}")
        return v


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class _Entry:
    """What name resolution needs, read without validating the whole entry."""

    id: str
    names: tuple[str, ...]
    aliases: tuple[str, ...]
    pci_device_ids: tuple[str, ...] = ()

    @property
    def keys(self) -> set[str]:
        return {_norm(self.id), *(_norm(n) for n in self.names), *(_norm(a) for a in self.aliases)}


def _validate(path: Path, raw: object) -> GpuSpec:
    """One catalog file -> GpuSpec; errors name the file and field."""
    if not isinstance(raw, dict):
        raise GpuError(f"{path}: expected a mapping at the top level")
    try:
        spec = GpuSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise GpuError(f"{path}: {loc}: {err['msg']}") from None
    if path.stem != spec.id:
        raise GpuError(f"{path}: id {spec.id!r} must match the file name {path.stem!r}")
    return spec


def _read(directory: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    from planner.yamlio import load_yaml_file, to_plain

    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.yaml")):
        raw = to_plain(load_yaml_file(path, fast=True))
        gid = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(gid, str) or gid in out:
            _validate(path, raw)  # raises the precise error (not a mapping, bad id)
            raise GpuError(f"{path}: duplicate GPU id {gid!r}")
        out[gid] = (path, raw)
    return out


def load_catalog(directory: Path) -> dict[str, GpuSpec]:
    """Load and validate every *.yaml under `directory`; error names file and field."""
    return {gid: _validate(path, raw) for gid, (path, raw) in _read(directory).items()}


@functools.lru_cache(maxsize=1)
def _shipped_raw() -> dict[str, tuple[Path, dict[str, Any]]]:
    from planner.resources import gpu_catalog_dir

    return _read(gpu_catalog_dir())


@functools.cache
def _shipped_spec(gid: str) -> GpuSpec:
    path, raw = _shipped_raw()[gid]
    return _validate(path, raw)


def shipped_catalog() -> dict[str, GpuSpec]:
    """The whole shipped catalog, validated (for listings; a plan validates only the GPU it uses)."""
    return {gid: _shipped_spec(gid) for gid in _shipped_raw()}


def _entries(catalog: dict[str, GpuSpec] | None) -> list[_Entry]:
    if catalog is not None:
        return [_Entry(id=s.id, names=tuple(s.names), aliases=tuple(s.aliases), pci_device_ids=tuple(s.pci_device_ids))
                for s in catalog.values()]
    return [_Entry(id=gid, names=tuple(raw.get("names") or ()), aliases=tuple(raw.get("aliases") or ()),
                   pci_device_ids=tuple(str(d) for d in raw.get("pci_device_ids") or ()))
            for gid, (_, raw) in _shipped_raw().items()]


def _spec(catalog: dict[str, GpuSpec] | None, gid: str) -> GpuSpec:
    return catalog[gid] if catalog is not None else _shipped_spec(gid)


def resolve_gpu(query: str, catalog: dict[str, GpuSpec] | None = None) -> GpuSpec:
    """Resolve an id, an exact nvidia-smi name, or an alias; unknown or ambiguous names fail listing candidates.

    Matching is case- and punctuation-insensitive. Exact id/name/alias matches win; otherwise a
    unique substring match on names/ids is accepted.
    """
    entries = _entries(catalog)
    q = _norm(query)
    if not q:
        raise GpuError("empty GPU name")
    exact = [e for e in entries if q in e.keys]
    if len(exact) == 1:
        return _spec(catalog, exact[0].id)
    if len(exact) > 1:
        ids = ", ".join(sorted(e.id for e in exact))
        raise GpuError(f"GPU name {query!r} is ambiguous; candidates: {ids}")
    partial = [e for e in entries if any(q in _norm(n) for n in (e.id, *e.names, *e.aliases))]
    if len(partial) == 1:
        return _spec(catalog, partial[0].id)
    if partial:
        ids = ", ".join(sorted(e.id for e in partial))
        raise GpuError(f"GPU name {query!r} is ambiguous; candidates: {ids}")
    raise GpuError(f"unknown GPU {query!r}; see `vllm-planner gpus` for the {len(entries)} known GPUs or pass "
                   f"--vram-gib{did_you_mean(closest_gpus(query, entries))}")


def closest_gpus(query: str, entries: list[_Entry]) -> list[str]:
    """The catalog names, aliases or ids closest to `query` (case and punctuation ignored), one per GPU."""
    choices = [(_norm(key), e.id, key) for e in entries for key in (*e.aliases, *e.names, e.id)]
    return closest(_norm(query), choices)


def match_smi_name(name: str, catalog: dict[str, GpuSpec] | None = None, *,
                   pci_device_id: str | None = None) -> GpuSpec | None:
    """Catalog entry whose probe-tool name equals `name` (normalised); else, for AMD tools that print only a PCI
    device id ("0x74a1"), the entry listing that id; else None."""
    q = _norm(name)
    entries = _entries(catalog)
    if q:
        for e in entries:
            if any(_norm(n) == q for n in e.names):
                return _spec(catalog, e.id)
    if pci_device_id:
        did = pci_device_id.lower()
        for e in entries:
            if did in e.pci_device_ids:
                return _spec(catalog, e.id)
    return None
