"""``nvidia-smi``'s default table, every layout from driver 367 to 610 (79/89/91 columns, 2- or 3-line GPU
rows), with its ``MIG devices:`` and ``Processes:`` boxes. Cells are split on ``|`` and read as tokens,
never by column offset.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from planner.hardware.captures.model import MIB, MigDevice, SmiGpu, SmiProbe, SmiProcess
from planner.hardware.captures.values import (
    BUS_ID_RE,
    is_err,
    mig_mode,
    na,
    to_bytes,
    to_float,
    to_int,
    version,
)

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
    bus = BUS_ID_RE.search(_cell(block[0], 1))
    values: dict[str, Any] = {
        "persistence_mode": mode if mode in ("On", "Off") else None,
        "driver_model": mode if mode in ("WDDM", "TCC") else None,
        "bus_id": bus.group(0) if bus else None,
    }
    if len(block) > 1:
        values.update(_gpu_second_line(block[1], errors))
    if len(block) > 2:
        mig = _cell(block[2], 2)
        values["mig_mode"] = mig_mode(mig)
        if is_err(mig):
            errors.append("mig_mode")
    if any(is_err(cell) for cell in block[0]):
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
            if is_err(raw) and label not in errors:
                errors.append(label)
        values.update(
            fan_percent=to_int(fan),
            temperature_c=to_int(temp),
            performance_state=na(perf),
            power_draw_w=to_float(draw),
            power_limit_w=to_float(cap),
        )
    memory = re.search(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB", _cell(cells, 1))
    if memory:
        values["memory_used_bytes"] = int(memory.group(1)) * MIB
        values["memory_total_bytes"] = int(memory.group(2)) * MIB
    elif is_err(_cell(cells, 1)):
        errors.append("memory")
    util = re.fullmatch(r"\s*(\S+)\s+(.*?)\s*", _cell(cells, 2))
    if util:
        values["utilization_percent"] = to_int(util.group(1))
        values["compute_mode"] = na(util.group(2))
    return values


def _mig_from_block(block: Sequence[list[str]]) -> MigDevice | None:
    head = _MIG_ROW_RE.fullmatch(_cell(block[0], 0)) if block else None
    if head is None:
        return None
    gpu, gi, ci, dev = head.groups()
    memory = re.search(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB", _cell(block[0], 1))
    return MigDevice(
        gpu_index=int(gpu),
        gi_id=to_int(gi),
        ci_id=to_int(ci),
        mig_index=to_int(dev),
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
        gpu_index=to_int(gpu),
        pid=to_int(pid),
        process_name=name,
        used_bytes=to_bytes(used),
        type=kind,
        gi_id=to_int(gi),
        ci_id=to_int(ci),
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
            "smi": version(smi.group(1)) if smi else None,
            "driver": version(drv.group(1)) if drv else None,
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


def parse(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
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
    if cuda_raw is not None and version(cuda_raw) is None and cuda_raw != "N/A":
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
        cuda_version=version(cuda_raw),
        smi_version=smi,
        processes=tuple(state.processes),
        mig_devices=tuple(state.migs),
        formats=("table",),
        warnings=tuple(warnings),
        partial=cut,
    )
