"""Parse saved or live nvidia-smi output into an :class:`SmiProbe`. Pure: no I/O, no subprocesses.

Formats recognised (a text may hold several, e.g. a collect_env report with a GPU list and a topology):

* ``table``: the default ``nvidia-smi`` table, every layout from driver 367 to 610 (79/89/91 columns,
  2- or 3-line GPU rows), with its ``MIG devices:`` and ``Processes:`` boxes. Cells are split on ``|``
  and read as tokens, never by column offset.
* ``list``: ``nvidia-smi -L`` (``GPU 0: NAME (UUID: GPU-...)`` plus indented ``MIG ...`` lines).
* ``collect_env``: vLLM/PyTorch ``collect_env.py`` "GPU models and configuration" and "GPU Topology".
* ``csv``: ``--query-gpu=... --format=csv`` with or without header and units; ``--query-compute-apps``.
* ``xml``: ``nvidia-smi -q -x``.
* ``topo``: ``nvidia-smi topo -m`` matrices (tabs or spaces, NIC columns, NUMA columns, legends).
* ``topo_p2p``: ``nvidia-smi topo -p2p ...`` grids: recognised so that they are *not* read as ``topo -m``.
* ``version``: ``nvidia-smi --version``.

Memory figures are what nvidia-smi prints (MiB x 1,048,576), not what CUDA reports as the device
total: an H100 SXM shows 81,559 MiB to nvidia-smi and 85,017,493,504 bytes to CUDA.

Errors: a capture of nvidia-smi failing, and input with nothing recognisable, raise
:class:`planner.errors.SmiError`; nothing else escapes :func:`parse_smi_text`.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from planner.errors import SmiError

__all__ = [
    "MIB",
    "PROBE_QUERY_FIELDS",
    "MigDevice",
    "SmiGpu",
    "SmiProbe",
    "SmiProcess",
    "Topology",
    "merge_probes",
    "parse_smi_text",
]

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
    """One physical GPU as nvidia-smi shows it. ``None`` means "not shown", never "zero".

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
    complete: bool = True  # False when the capture was cut inside this GPU's row

    @property
    def name_truncated(self) -> bool:
        """True when nvidia-smi cut the name to fit its column (ends in "...")."""
        return self.name.endswith("...")

    @property
    def healthy(self) -> bool:
        """False when a reading other than MIG mode shows ERR! (a GPU in an error state).

        MIG mode alone showing ERR! means "unknown" (e.g. a newer nvidia-smi over an older driver).
        """
        return all(e == "mig_mode" for e in self.errors)


def _gpu_number(label: str) -> int | None:
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
        return tuple(i for i in (_gpu_number(label) for label in self.gpu_labels) if i is not None)

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
    """Everything recognised in one or more nvidia-smi captures."""

    gpus: tuple[SmiGpu, ...] = ()
    driver_version: str | None = None  # from "Driver Version" / "KMD Version", never from "NVIDIA-SMI"
    cuda_version: str | None = None  # the driver's CUDA version; None for N/A, ERR! or not printed
    smi_version: str | None = None
    processes: tuple[SmiProcess, ...] = ()
    mig_devices: tuple[MigDevice, ...] = ()
    topology: Topology | None = None
    p2p: dict[tuple[int, int], str] = field(default_factory=dict)  # topo -p2p cells: OK, GNS, CNS...
    formats: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    partial: bool = False  # the capture looks cut off
    source: str = "<input>"

    @property
    def interconnect(self) -> Interconnect | None:
        """ "nvlink" when every GPU pair is NV#, "pcie" when some is not, None without a topology."""
        return self.topology.interconnect if self.topology is not None else None


# ---------------------------------------------------------------------------------------------- values

_NA_VALUES = frozenset({"", "N/A", "NA", "n/a", "Not Supported", "Unknown Error", "-"})
_VERSION_RE = re.compile(r"\d+(?:\.\d+)+")
_BUS_ID_RE = re.compile(r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]")
_UUID_RE = re.compile(r"GPU-[0-9A-Fa-f-]{8,}")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|MB|GB)?")
_UNIT_BYTES = {"KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB, "MB": MIB, "GB": 1024 * MIB}
_MAX_LINE = 4096  # longer lines are no nvidia-smi output; skip them (keeps regexes linear in practice)


def _na(value: str | None) -> str | None:
    """Strip a cell; None for N/A, [N/A], [Not Supported] and other placeholders."""
    if value is None:
        return None
    value = value.strip()
    if value in _NA_VALUES or (value.startswith("[") and value.endswith("]")):
        return None
    return value


def _to_int(value: str | None) -> int | None:
    value = _na(value)
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)\s*(%|C|W|MHz)?", value)
    return int(match.group(1)) if match else None


def _to_float(value: str | None) -> float | None:
    value = _na(value)
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(W|%)?", value)
    return float(match.group(1)) if match else None


def _to_bytes(value: str | None, default_unit: str = "MiB") -> int | None:
    """'81559MiB', '81559 MiB' or '81559' (with the unit from a CSV header) -> bytes; None for N/A."""
    value = _na(value)
    if value is None:
        return None
    match = _MEMORY_RE.fullmatch(value)
    if not match:
        return None
    unit = match.group(2) or default_unit
    return int(float(match.group(1)) * _UNIT_BYTES.get(unit, MIB))


def _version(value: str | None) -> str | None:
    value = _na(value)
    return value if value is not None and _VERSION_RE.fullmatch(value) else None


def _err(value: str | None) -> bool:
    return value is not None and value.strip() == "ERR!"


def _mig_mode(value: str | None) -> str | None:
    value = _na(value)
    return value if value in ("Enabled", "Disabled") else None


def _persistence(value: str | None) -> str | None:
    value = _na(value)
    return {"Enabled": "On", "Disabled": "Off", "On": "On", "Off": "Off"}.get(value or "")


# -------------------------------------------------------------------------------------------- failures

_FAILURE_RES = (
    re.compile(r"NVIDIA-SMI has failed\b.*"),
    re.compile(r"NVIDIA-SMI couldn't find\b.*"),
    re.compile(r"No devices were found\b.*"),
    re.compile(r"Failed to initialize NVML\b.*"),
    re.compile(r"Unable to determine the device handle for GPU\b.*"),
    re.compile(r'Field "[^"]*" is not a valid field to query\..*'),
    re.compile(r"Unknown Error"),
)


def _find_failure(lines: Sequence[str]) -> str | None:
    """The first line in which nvidia-smi reports a failure, stripped."""
    for line in lines:
        text = line.strip()
        if any(regex.fullmatch(text) for regex in _FAILURE_RES):
            return text
    return None


# ----------------------------------------------------------------------------------------------- table

_TABLE_BORDER_RE = re.compile(r"\+[-=+]*-[-=+]*")  # +----+----+ (top, bottom, between rows)
_TABLE_SEPARATOR_RE = re.compile(r"\|[=|+]*=[=|+]*")  # |====+====| (end of a box header)
_DRIVER_RE = re.compile(r"(?:Driver|KMD) Version:\s*(\S+)")
_CUDA_RE = re.compile(r"CUDA (?:UMD )?Version:\s*(\S+)")
_SMI_RE = re.compile(r"NVIDIA-SMI\s+(\S+)")
_NAME_MODE_RE = re.compile(r"(.*?)\s+(On|Off|WDDM|TCC|N/A)")
_POWER_ROW_RE = re.compile(r"\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*/\s*(\S+)\s*")
_MIG_ROW_RE = re.compile(r"\s*(\d+)\s+(\d+|N/A)\s+(\d+|N/A)\s+(\d+|N/A)\s*")
_PROC_TYPES = r"C\+G|M\+C|[CGM]"
_PROC_NEW_RE = re.compile(
    rf"\s*(\d+|N/A)\s+(\d+|N/A)\s+(\d+|N/A)\s+(\d+|N/A)\s+({_PROC_TYPES})\s+(.*?)\s+(\d+\s*MiB|N/A)\s*"
)
_PROC_OLD_RE = re.compile(rf"\s*(\d+|N/A)\s+(\d+|N/A)\s+({_PROC_TYPES})\s+(.*?)\s+(\d+\s*MiB|N/A)\s*")


def _cells(line: str) -> list[str]:
    """The cells of a ``| a | b |`` line (the outer bars dropped)."""
    text = line.strip()
    parts = text.split("|")
    return parts[1:-1] if text.endswith("|") and len(parts) > 2 else parts[1:]


def _cell(cells: Sequence[str], i: int) -> str:
    return cells[i] if 0 <= i < len(cells) else ""


def _is_table_line(line: str) -> bool:
    return line.lstrip().startswith(("|", "+"))


def _gpu_from_block(block: Sequence[list[str]], rows_per_gpu: int) -> SmiGpu | None:
    """One GPU from the 2 or 3 lines of its row (fewer when the capture was cut)."""
    head = re.fullmatch(r"\s*(\d+)\s+(.*?)\s*", _cell(block[0], 0)) if block else None
    if head is None or not head.group(2):
        return None
    errors: list[str] = []
    name, mode = head.group(2), None
    named = _NAME_MODE_RE.fullmatch(head.group(2))
    if named:
        name, mode = named.group(1), named.group(2)
    bus = _BUS_ID_RE.search(_cell(block[0], 1))
    values: dict[str, Any] = {
        "persistence_mode": mode if mode in ("On", "Off") else None,
        "driver_model": mode if mode in ("WDDM", "TCC") else None,
        "bus_id": bus.group(0) if bus else None,
    }
    if len(block) > 1:
        values.update(_gpu_second_line(block[1], errors))
    if len(block) > 2:
        mig = _cell(block[2], 2)
        values["mig_mode"] = _mig_mode(mig)
        if _err(mig):
            errors.append("mig_mode")
    if any(_err(cell) for cell in block[0]):
        errors.append("status")
    complete = len(block) >= rows_per_gpu
    return SmiGpu(index=int(head.group(1)), name=name, errors=tuple(errors), complete=complete, **values)


def _gpu_second_line(cells: list[str], errors: list[str]) -> dict[str, Any]:
    """Fan, temperature, perf state, power, memory, utilization and compute mode."""
    values: dict[str, Any] = {}
    power = _POWER_ROW_RE.fullmatch(_cell(cells, 0))
    if power:
        fan, temp, perf, draw, cap = power.groups()
        for label, raw in (("fan", fan), ("temperature", temp), ("power", draw), ("power", cap)):
            if _err(raw) and label not in errors:
                errors.append(label)
        values.update(
            fan_percent=_to_int(fan),
            temperature_c=_to_int(temp),
            performance_state=_na(perf),
            power_draw_w=_to_float(draw),
            power_limit_w=_to_float(cap),
        )
    memory = re.search(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB", _cell(cells, 1))
    if memory:
        values["memory_used_bytes"] = int(memory.group(1)) * MIB
        values["memory_total_bytes"] = int(memory.group(2)) * MIB
    elif _err(_cell(cells, 1)):
        errors.append("memory")
    util = re.fullmatch(r"\s*(\S+)\s+(.*?)\s*", _cell(cells, 2))
    if util:
        values["utilization_percent"] = _to_int(util.group(1))
        values["compute_mode"] = _na(util.group(2))
    return values


def _mig_from_block(block: Sequence[list[str]]) -> MigDevice | None:
    head = _MIG_ROW_RE.fullmatch(_cell(block[0], 0)) if block else None
    if head is None:
        return None
    gpu, gi, ci, dev = head.groups()
    memory = re.search(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB", _cell(block[0], 1))
    return MigDevice(
        gpu_index=int(gpu),
        gi_id=_to_int(gi),
        ci_id=_to_int(ci),
        mig_index=_to_int(dev),
        memory_used_bytes=int(memory.group(1)) * MIB if memory else None,
        memory_total_bytes=int(memory.group(2)) * MIB if memory else None,
    )


def _process_from_row(text: str) -> SmiProcess | None:
    new = _PROC_NEW_RE.fullmatch(text)
    if new:
        gpu, gi, ci, pid, kind, name, used = new.groups()
    else:
        old = _PROC_OLD_RE.fullmatch(text)
        if old is None:
            return None
        gpu, pid, kind, name, used = old.groups()
        gi = ci = None
    return SmiProcess(
        gpu_index=_to_int(gpu),
        pid=_to_int(pid),
        process_name=name,
        used_bytes=_to_bytes(used),
        type=kind,
        gi_id=_to_int(gi),
        ci_id=_to_int(ci),
    )


@dataclass
class _TableState:
    """Mutable state while walking the lines of one default table."""

    section: str = ""
    rows_per_gpu: int = 2
    block: list[list[str]] = field(default_factory=list)
    gpus: list[SmiGpu] = field(default_factory=list)
    migs: list[MigDevice] = field(default_factory=list)
    processes: list[SmiProcess] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    last_line: str = ""
    started: bool = False
    done: bool = False
    warnings: list[str] = field(default_factory=list)

    def flush(self) -> None:
        if self.block and self.section == "gpu":
            gpu = _gpu_from_block(self.block, self.rows_per_gpu)
            if gpu is not None:
                self.gpus.append(gpu)
        elif self.block and self.section == "mig":
            mig = _mig_from_block(self.block)
            if mig is not None:
                self.migs.append(mig)
        self.block = []


def _table_header(state: _TableState, text: str) -> bool:
    """Handle a header line (versions, box titles, separators); True if the line was one."""
    if "NVIDIA-SMI" in text and "has failed" not in text:
        if state.gpus:
            state.warnings.append("several nvidia-smi tables found; only the first was read")
            state.done = True
            return True
        smi, drv, cuda = _SMI_RE.search(text), _DRIVER_RE.search(text), _CUDA_RE.search(text)
        state.versions = {
            "smi": _version(smi.group(1)) if smi else None,
            "driver": _version(drv.group(1)) if drv else None,
            "cuda_raw": cuda.group(1) if cuda else None,
        }
    elif re.search(r"\bGPU\s+Name\b", text):
        state.flush()
        state.section = "gpu_head"
    elif "MIG devices:" in text:
        state.flush()
        state.section = "mig_head"
    elif "Processes:" in text:
        state.flush()
        state.section = "proc_head"
    elif "MIG M." in text and state.section == "gpu_head":
        state.rows_per_gpu = 3
    elif _TABLE_SEPARATOR_RE.fullmatch(text):
        if state.section.endswith("_head"):
            state.section = state.section[: -len("_head")]
    elif _TABLE_BORDER_RE.fullmatch(text):
        state.flush()
    else:
        return False
    return True


def _parse_table(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
    state = _TableState()
    for i, line in enumerate(lines):
        if state.done:
            break
        if not _is_table_line(line):
            if line.strip():
                state.flush()
            continue
        claimed.add(i)
        state.started = True
        text = line.strip()
        state.last_line = text
        if _table_header(state, text):
            continue
        if state.section in ("gpu", "mig"):
            state.block.append(_cells(text))
        elif state.section == "proc":
            row = "|".join(_cells(text))
            process = _process_from_row(row)
            if process is not None:
                state.processes.append(process)
    state.flush()
    if not state.started or not (state.gpus or state.versions):
        return None
    return _table_probe(state)


def _table_probe(state: _TableState) -> SmiProbe:
    warnings = list(state.warnings)
    smi, driver, cuda_raw = (state.versions.get(k) for k in ("smi", "driver", "cuda_raw"))
    if cuda_raw is not None and _version(cuda_raw) is None and cuda_raw != "N/A":
        warnings.append(f"nvidia-smi printed CUDA Version: {cuda_raw}; the CUDA version is unknown")
    if smi and driver and smi != driver:
        warnings.append(f"nvidia-smi {smi} differs from driver {driver} (WSL, Windows or a container)")
    for gpu in state.gpus:
        if not gpu.healthy:
            warnings.append(f"GPU {gpu.index} shows ERR! ({', '.join(gpu.errors)}): it may be unusable")
        elif gpu.errors:
            warnings.append(f"GPU {gpu.index}: MIG mode shows ERR!; MIG state unknown")
    cut = not _TABLE_BORDER_RE.fullmatch(state.last_line) or any(not g.complete for g in state.gpus)
    if cut:
        warnings.append("the nvidia-smi table is cut off; it was read up to its last complete line")
    return SmiProbe(
        gpus=tuple(state.gpus),
        driver_version=driver,
        cuda_version=_version(cuda_raw),
        smi_version=smi,
        processes=tuple(state.processes),
        mig_devices=tuple(state.migs),
        formats=("table",),
        warnings=tuple(warnings),
        partial=cut,
    )


# ------------------------------------------------------------------------------------------------ topo

_TRAILER_RE = re.compile(r"CPU Affinity|NUMA Affinity|GPU NUMA ID")
_DEVICE_LABEL_RE = re.compile(r"GPU\d+|NIC\d+|mlx\d+_\d+|[A-Za-z][A-Za-z0-9_]*\d")
_TOPO_CELL_RE = re.compile(r"X|SYS|SOC|NODE|PHB|PXB|PIX|NV\d+")
_P2P_CELLS = frozenset({"OK", "CNS", "GNS", "TNS", "NS", "DR", "U"})
_OVERFLOW_RE = re.compile(r"PH(\d[\d,\-]*)")  # "PH0-115": the PHB cell merged with CPU Affinity


def _topo_header(line: str) -> tuple[list[str], list[str]] | None:
    """(device labels, trailer columns) of a matrix header line, or None."""
    text = line.strip()
    trailer = _TRAILER_RE.search(text)
    labels = (text[: trailer.start()] if trailer else text).split()
    if not labels or _gpu_number(labels[0]) is None or len(set(labels)) != len(labels):
        return None
    if not all(_DEVICE_LABEL_RE.fullmatch(label) for label in labels):
        return None
    return labels, _TRAILER_RE.findall(text)


def _assign_trailers(names: Sequence[str], values: Sequence[str]) -> dict[str, str | None]:
    """Map the non-empty trailing cells to their columns (left-aligned if all there, else right)."""
    if len(values) < len(names):
        values = [""] * (len(names) - len(values)) + list(values)
    return {name: _na(value) for name, value in zip(names, values, strict=False)}


@dataclass
class _Matrix:
    labels: list[str]
    trailers: list[str]
    rows: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, dict[str, str | None]] = field(default_factory=dict)
    cut: bool = False


def _read_matrix(lines: Sequence[str], start: int, claimed: set[int], matrix: _Matrix) -> None:
    """Read the rows that follow a header at ``start``."""
    n_dev = len(matrix.labels)
    for j in range(start + 1, len(lines)):
        tokens = lines[j].split()
        if not tokens or tokens[0] not in matrix.labels or tokens[0] in matrix.rows:
            break
        claimed.add(j)
        cells, rest = tokens[1 : 1 + n_dev], tokens[1 + n_dev :]
        overflow = _OVERFLOW_RE.fullmatch(cells[-1]) if len(cells) == n_dev else None
        if overflow:
            cells[-1], rest = "PHB", [overflow.group(1), *rest]
        if len(cells) < n_dev:
            matrix.cut = True
            continue
        matrix.rows[tokens[0]] = cells
        matrix.extra[tokens[0]] = _assign_trailers(matrix.trailers, rest)
    if any(label not in matrix.rows for label in matrix.labels):
        matrix.cut = True


def _gpu_cells(matrix: _Matrix) -> dict[tuple[int, int], str]:
    cells: dict[tuple[int, int], str] = {}
    for row_label, row in matrix.rows.items():
        a = _gpu_number(row_label)
        for col_label, cell in zip(matrix.labels, row, strict=False):
            b = _gpu_number(col_label)
            if a is not None and b is not None:
                cells[(a, b)] = cell
    return cells


def _matrix_probe(matrix: _Matrix, nic_names: dict[str, str]) -> SmiProbe | None:
    cells = _gpu_cells(matrix)
    off_diagonal = [cell for (a, b), cell in cells.items() if a != b]
    if off_diagonal and all(cell in _P2P_CELLS for cell in off_diagonal):
        note = "this is `nvidia-smi topo -p2p` output (peer-to-peer status), not a `topo -m` matrix"
        return SmiProbe(p2p=cells, formats=("topo_p2p",), warnings=(f"{note}; interconnect unknown",))
    if not matrix.trailers and not off_diagonal:
        return None
    if not all(_TOPO_CELL_RE.fullmatch(cell) for cell in cells.values()):
        return None
    gpu_labels = tuple(label for label in matrix.labels if _gpu_number(label) is not None)
    extra = [matrix.extra.get(label, {}) for label in gpu_labels]
    topology = Topology(
        gpu_labels=gpu_labels,
        links=cells,
        nic_labels=tuple(label for label in matrix.labels if _gpu_number(label) is None),
        nic_names={k: v for k, v in nic_names.items() if k in matrix.labels},
        cpu_affinity=tuple(row.get("CPU Affinity") for row in extra),
        numa_affinity=tuple(row.get("NUMA Affinity") for row in extra),
    )
    warnings = ("the topology matrix is cut off; rows it lacks are unknown",) if matrix.cut else ()
    return SmiProbe(topology=topology, formats=("topo",), warnings=warnings, partial=matrix.cut)


def _parse_topologies(lines: Sequence[str], claimed: set[int]) -> list[SmiProbe]:
    nic_names: dict[str, str] = {}
    for line in lines:
        legend = re.fullmatch(r"\s*(NIC\d+):\s*(\S+)\s*", line)
        if legend:
            nic_names[legend.group(1)] = legend.group(2)
    probes: list[SmiProbe] = []
    for i, line in enumerate(lines):
        if i in claimed:
            continue
        header = _topo_header(line)
        if header is None:
            continue
        matrix = _Matrix(labels=header[0], trailers=header[1])
        _read_matrix(lines, i, claimed, matrix)
        if not matrix.rows:
            continue
        probe = _matrix_probe(matrix, nic_names)
        if probe is not None:
            claimed.add(i)
            probes.append(probe)
    return probes


# ------------------------------------------------------------------------------------- -L, collect_env

_LIST_GPU_RE = re.compile(r"GPU (\d+): (.+?)(?: \(UUID: ([^)]*)\))?\s*")
_LIST_MIG_RE = re.compile(r"\s+MIG\s+(\S+)\s+Device\s+(\d+): \(UUID: ([^)]*)\)\s*")
_ENV_GPUS_RE = re.compile(r"GPU models and configuration\s*:\s*(.*)")
_ENV_DRIVER_RE = re.compile(r"Nvidia driver version\s*:\s*(\S*)\s*")


def _list_mig(match: re.Match[str], gpu_index: int) -> MigDevice:
    profile, dev, uuid = match.groups()
    old_style = re.search(r"/(\d+)/(\d+)$", uuid)  # MIG-GPU-<uuid>/<gi>/<ci> (drivers < 470)
    return MigDevice(
        gpu_index=gpu_index,
        mig_index=int(dev),
        name=profile,
        uuid=uuid or None,
        gi_id=int(old_style.group(1)) if old_style else None,
        ci_id=int(old_style.group(2)) if old_style else None,
    )


def _parse_listing(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
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
            env, driver = True, _version(drv.group(1)) or driver
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


def _parse_version_lines(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
    """``nvidia-smi --version``: "DRIVER version : 580.159.04", "CUDA Version : 13.0"."""
    found: dict[str, str | None] = {}
    for i, line in enumerate(lines):
        match = re.fullmatch(r"(NVIDIA-SMI|NVML|DRIVER|CUDA) [Vv]ersion\s*:\s*(\S+)\s*", line)
        if match and i not in claimed:
            claimed.add(i)
            found[match.group(1)] = _version(match.group(2))
    if not found:
        return None
    return SmiProbe(
        driver_version=found.get("DRIVER"),
        cuda_version=found.get("CUDA"),
        smi_version=found.get("NVIDIA-SMI"),
        formats=("version",),
    )


# ------------------------------------------------------------------------------------------------- csv

_FIELD_ALIASES = {
    "gpu_name": "name",
    "gpu_uuid": "uuid",
    "gpu_bus_id": "pci.bus_id",
    "pci.bus": "pci.bus_id",
    "used_gpu_memory": "used_memory",
    "process_name": "process_name",
    "memory.total": "memory.total",
}
_FIELD_RE = re.compile(r"([a-z][a-z0-9_.]*)\s*(?:\[([^\]]*)\])?")
_NAME_LIKE_RE = re.compile(r"(NVIDIA|Tesla|GeForce|Quadro|TITAN|GRID|RTX|GTX)\b.*|[ABHLTV]\d{1,3}\b.*")
_KNOWN_FIELDS = frozenset(
    {
        "index",
        "name",
        "uuid",
        "pci.bus_id",
        "memory.total",
        "memory.used",
        "memory.free",
        "compute_cap",
        "driver_version",
        "mig.mode.current",
        "persistence_mode",
        "pid",
        "used_memory",
        "process_name",
        "power.draw",
        "power.limit",
        "temperature.gpu",
        "utilization.gpu",
        "fan.speed",
        "pstate",
        "count",
    }
)


def _csv_header(cells: Sequence[str]) -> list[tuple[str, str | None]] | None:
    """[(field, unit)] when ``cells`` is a ``--format=csv`` header line, else None."""
    parsed = [_FIELD_RE.fullmatch(cell) for cell in cells]
    if not all(parsed):
        return None
    header = [(_FIELD_ALIASES.get(m.group(1), m.group(1)), m.group(2)) for m in parsed if m]
    return header if any(name in _KNOWN_FIELDS for name, _ in header) else None


def _guess_fields(cells: Sequence[str]) -> list[str] | None:
    """Field names for a headerless row, from the values' shapes (only unambiguous shapes)."""
    if len(cells) == len(PROBE_QUERY_FIELDS) and _looks_like_probe_row(cells):
        return list(PROBE_QUERY_FIELDS)
    names: list[str] = []
    for n, cell in enumerate(cells):
        if _UUID_RE.fullmatch(cell):
            names.append("uuid")
        elif _BUS_ID_RE.fullmatch(cell):
            names.append("pci.bus_id")
        elif re.fullmatch(r"\d{3}\.\d{2,3}\.\d{2}", cell):
            names.append("driver_version")
        elif "name" not in names and _NAME_LIKE_RE.fullmatch(cell):
            names.append("name")
        elif n == 0 and cell.isdigit() and len(cells) > 1 and _NAME_LIKE_RE.fullmatch(cells[1]):
            names.append("index")
        else:
            names.append(f"?{n}")
    return names if ("name" in names or "uuid" in names) else None


def _looks_like_probe_row(cells: Sequence[str]) -> bool:
    index, name, uuid, bus, driver = cells[0], cells[1], cells[5], cells[6], cells[7]
    return (
        index.isdigit()
        and bool(name)
        and (_na(uuid) is None or bool(_UUID_RE.fullmatch(uuid)))
        and (_na(bus) is None or bool(_BUS_ID_RE.fullmatch(bus)))
        and (_na(driver) is None or bool(_version(driver)))
    )


def _record_gpu(record: dict[str, tuple[str, str | None]], position: int) -> SmiGpu:
    def get(key: str) -> str | None:
        return _na(record[key][0]) if key in record else None

    def unit(key: str) -> str:
        return (record[key][1] if key in record else None) or "MiB"

    errors = tuple(key for key, (value, _) in record.items() if _err(value))
    cc = get("compute_cap")
    bus = get("pci.bus_id")
    index = _to_int(get("index"))
    return SmiGpu(
        index=position if index is None else index,
        name=get("name") or "",
        memory_total_bytes=_to_bytes(get("memory.total"), unit("memory.total")),
        memory_used_bytes=_to_bytes(get("memory.used"), unit("memory.used")),
        compute_capability=cc if cc and re.fullmatch(r"\d+\.\d+", cc) else None,
        uuid=get("uuid"),
        bus_id=bus if bus and _BUS_ID_RE.fullmatch(bus) else None,
        mig_mode=_mig_mode(get("mig.mode.current")),
        persistence_mode=_persistence(get("persistence_mode")),
        power_draw_w=_to_float(get("power.draw")),
        power_limit_w=_to_float(get("power.limit")),
        temperature_c=_to_int(get("temperature.gpu")),
        utilization_percent=_to_int(get("utilization.gpu")),
        fan_percent=_to_int(get("fan.speed")),
        performance_state=get("pstate"),
        errors=errors,
    )


def _record_process(record: dict[str, tuple[str, str | None]]) -> SmiProcess:
    def get(key: str) -> str | None:
        return _na(record[key][0]) if key in record else None

    unit = record["used_memory"][1] if "used_memory" in record else None
    return SmiProcess(
        gpu_index=_to_int(get("index")),
        pid=_to_int(get("pid")),
        process_name=get("process_name") or get("name") or "",
        used_bytes=_to_bytes(get("used_memory"), unit or "MiB"),
        type=None,
    )


def _csv_rows(
    lines: Sequence[str], start: int, width: int, claimed: set[int]
) -> tuple[list[list[str]], bool]:
    """Consecutive rows of ``width`` cells from ``start``; also whether a shorter (cut) row ended them."""
    rows: list[list[str]] = []
    for j in range(start, len(lines)):
        if j in claimed or not lines[j].strip():
            break
        cells = [c.strip() for c in lines[j].strip().split(",")]
        if len(cells) != width:
            return rows, len(cells) < width
        claimed.add(j)
        rows.append(cells)
    return rows, False


def _parse_csv(lines: Sequence[str], claimed: set[int], fields: Sequence[str] | None) -> list[SmiProbe]:
    probes: list[SmiProbe] = []
    for i, line in enumerate(lines):
        text = line.strip()
        if i in claimed or "," not in text or text[0] in "|+<#" or "=" in text:
            continue
        cells = [c.strip() for c in text.split(",")]
        header = _csv_header(cells)
        if header is not None:
            claimed.add(i)
            rows, cut = _csv_rows(lines, i + 1, len(cells), claimed)
        else:
            names = list(fields) if fields is not None and len(fields) == len(cells) else _guess_fields(cells)
            if names is None:
                continue
            header = [(_FIELD_ALIASES.get(name, name), None) for name in names]
            rows, cut = _csv_rows(lines, i, len(cells), claimed)
        probes.append(_csv_probe(header, rows, cut))
    return probes


def _csv_probe(header: Sequence[tuple[str, str | None]], rows: Sequence[list[str]], cut: bool) -> SmiProbe:
    records = [
        {name: (value, unit) for (name, unit), value in zip(header, row, strict=False)} for row in rows
    ]
    names = {name for name, _ in header}
    warnings = ["a CSV row is cut off; it was skipped"] if cut else []
    if "pid" in names:
        processes = tuple(_record_process(record) for record in records)
        return SmiProbe(processes=processes, formats=("csv",), warnings=tuple(warnings), partial=cut)
    gpus = tuple(_record_gpu(record, n) for n, record in enumerate(records))
    drivers = [_version(record["driver_version"][0]) for record in records if "driver_version" in record]
    if any(name.startswith("?") for name in names) and "memory.total" not in names:
        warnings.append("CSV without a header: columns were identified by their values; memory is unknown")
    return SmiProbe(
        gpus=gpus,
        driver_version=next((d for d in drivers if d is not None), None),
        formats=("csv",),
        warnings=tuple(warnings),
        partial=cut,
    )


# ------------------------------------------------------------------------------------------------- xml


def _xtext(elem: ET.Element, path: str) -> str | None:
    found = elem.find(path)
    return _na(found.text) if found is not None and found.text is not None else None


def _xml_gpu(elem: ET.Element, index: int) -> tuple[SmiGpu, list[SmiProcess], list[MigDevice]]:
    bus = _xtext(elem, "pci/pci_bus_id") or _na(elem.get("id"))
    cc = _xtext(elem, "compute_cap")
    gpu = SmiGpu(
        index=index,
        name=_xtext(elem, "product_name") or "",
        memory_total_bytes=_to_bytes(_xtext(elem, "fb_memory_usage/total")),
        memory_used_bytes=_to_bytes(_xtext(elem, "fb_memory_usage/used")),
        compute_capability=cc if cc and re.fullmatch(r"\d+\.\d+", cc) else None,
        uuid=_xtext(elem, "uuid"),
        bus_id=bus if bus and _BUS_ID_RE.fullmatch(bus) else None,
        mig_mode=_mig_mode(_xtext(elem, "mig_mode/current_mig")),
        persistence_mode=_persistence(_xtext(elem, "persistence_mode")),
        driver_model=_xtext(elem, "driver_model/current_dm"),
        performance_state=_xtext(elem, "performance_state"),
    )
    processes = [
        SmiProcess(
            gpu_index=index,
            pid=_to_int(_xtext(p, "pid")),
            process_name=_xtext(p, "process_name") or "",
            used_bytes=_to_bytes(_xtext(p, "used_memory")),
            type=_xtext(p, "type"),
            gi_id=_to_int(_xtext(p, "gpu_instance_id")),
            ci_id=_to_int(_xtext(p, "compute_instance_id")),
        )
        for p in elem.findall("processes/process_info")
    ]
    migs = [
        MigDevice(
            gpu_index=index,
            mig_index=_to_int(_xtext(m, "index")),
            gi_id=_to_int(_xtext(m, "gpu_instance_id")),
            ci_id=_to_int(_xtext(m, "compute_instance_id")),
            memory_total_bytes=_to_bytes(_xtext(m, "fb_memory_usage/total")),
            memory_used_bytes=_to_bytes(_xtext(m, "fb_memory_usage/used")),
        )
        for m in elem.findall("mig_devices/mig_device")
    ]
    return gpu, processes, migs


def _parse_xml(text: str) -> SmiProbe | None:
    """``nvidia-smi -q -x``. Starts at the root element, so no DTD (and no entity) is ever read."""
    start = text.find("<nvidia_smi_log")
    if start < 0:
        return None
    end = text.find("</nvidia_smi_log>", start)
    body = text[start:] if end < 0 else text[start : end + len("</nvidia_smi_log>")]
    parser = ET.XMLPullParser(events=("start", "end"))
    depth, cut = 0, False
    gpus: list[SmiGpu] = []
    processes: list[SmiProcess] = []
    migs: list[MigDevice] = []
    top: dict[str, str | None] = {}
    try:
        parser.feed(body)
        parser.close()
    except ET.ParseError:
        cut = True
    try:
        for event, elem in parser.read_events():
            depth += 1 if event == "start" else -1
            if event != "end" or depth != 1:
                continue
            if elem.tag == "gpu":
                gpu, procs, mig = _xml_gpu(elem, len(gpus))
                gpus.append(gpu)
                processes += procs
                migs += mig
            elif elem.tag in ("driver_version", "cuda_version"):
                top[elem.tag] = _version(elem.text)
    except ET.ParseError:
        cut = True
    if not gpus and not top:
        return None
    return SmiProbe(
        gpus=tuple(gpus),
        driver_version=top.get("driver_version"),
        cuda_version=top.get("cuda_version"),
        processes=tuple(processes),
        mig_devices=tuple(migs),
        formats=("xml",),
        partial=cut,
        warnings=("the XML is cut off or malformed; it was read up to its last complete <gpu>",)
        if cut
        else (),
    )


# ----------------------------------------------------------------------------------------------- merge


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


# ----------------------------------------------------------------------------------------- entry point


def _clean_lines(text: str) -> list[str]:
    text = _ANSI_RE.sub("", text.lstrip("\ufeff")).replace("\r\n", "\n").replace("\r", "\n")
    return [line if len(line) <= _MAX_LINE else "" for line in text.split("\n")]


def parse_smi_text(
    text: str, source: str = "<input>", *, csv_fields: Sequence[str] | None = None
) -> SmiProbe:
    """Parse nvidia-smi output of any recognised format (several may share one text).

    ``csv_fields`` names the columns of a headerless ``--format=csv,noheader`` capture; without it such
    columns are identified by their values where that is unambiguous.

    Raises SmiError when the text shows nvidia-smi failing (quoting its message) or holds nothing
    recognisable (empty, binary, garbage).
    """
    if not isinstance(text, str) or "\x00" in text:
        raise SmiError(f"no GPUs recognised in {source}: the input is binary, not nvidia-smi text")
    lines = _clean_lines(text)
    claimed: set[int] = set()
    parts = [
        _parse_xml(text),
        _parse_table(lines, claimed),
        *_parse_topologies(lines, claimed),
        _parse_listing(lines, claimed),
        _parse_version_lines(lines, claimed),
        *_parse_csv(lines, claimed, csv_fields),
    ]
    probe = merge_probes(*(replace(p, source=source) for p in parts if p is not None))
    failure = _find_failure(lines)
    if failure is not None and not probe.gpus:
        raise SmiError(f'{source}: nvidia-smi failed: "{failure}"')
    if not (probe.gpus or probe.topology or probe.p2p or probe.mig_devices):
        raise SmiError(f"no GPUs recognised in {source}")
    if failure is not None:
        probe = replace(probe, warnings=(*probe.warnings, f'nvidia-smi also reported: "{failure}"'))
    return replace(probe, source=source)
