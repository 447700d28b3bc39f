"""``nvidia-smi -q -x``: the XML report, read up to its last complete ``<gpu>`` when cut off.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from planner.hardware.captures.model import MigDevice, SmiGpu, SmiProbe, SmiProcess
from planner.hardware.captures.values import BUS_ID_RE, mig_mode, na, persistence, to_bytes, to_int, version


def _xtext(elem: ET.Element, path: str) -> str | None:
    found = elem.find(path)
    return na(found.text) if found is not None and found.text is not None else None


# Memory-health flags of `nvidia-smi -q -x` that mean "reset or replace before use" (NVIDIA's GPU memory error
# management guide, r575: a pending retirement or row remap takes effect at the next GPU reset; a row-remap
# failure means the GPU should be serviced). Element path -> what the plan says.
_MEMORY_FAULTS = (
    ("retired_pages/pending_retirement", "retired pages pending (reset the GPU)"),
    ("retired_pages/pending_blacklist", "retired pages pending (reset the GPU)"),
    ("remapped_rows/remapped_row_pending", "memory row remapping pending (reset the GPU)"),
    ("remapped_rows/remapped_row_failure", "memory row remapping failed (service the GPU)"),
)


def _faults(elem: ET.Element) -> tuple[str, ...]:
    found = (what for path, what in _MEMORY_FAULTS if (_xtext(elem, path) or "").lower() == "yes")
    return tuple(dict.fromkeys(found))


def _xml_gpu(elem: ET.Element, index: int) -> tuple[SmiGpu, list[SmiProcess], list[MigDevice]]:
    bus = _xtext(elem, "pci/pci_bus_id") or na(elem.get("id"))
    cc = _xtext(elem, "compute_cap")
    gpu = SmiGpu(
        index=index,
        name=_xtext(elem, "product_name") or "",
        memory_total_bytes=to_bytes(_xtext(elem, "fb_memory_usage/total")),
        memory_used_bytes=to_bytes(_xtext(elem, "fb_memory_usage/used")),
        compute_capability=cc if cc and re.fullmatch(r"\d+\.\d+", cc) else None,
        uuid=_xtext(elem, "uuid"),
        bus_id=bus if bus and BUS_ID_RE.fullmatch(bus) else None,
        mig_mode=mig_mode(_xtext(elem, "mig_mode/current_mig")),
        persistence_mode=persistence(_xtext(elem, "persistence_mode")),
        driver_model=_xtext(elem, "driver_model/current_dm"),
        performance_state=_xtext(elem, "performance_state"),
        faults=_faults(elem),
    )
    processes = [
        SmiProcess(
            gpu_index=index,
            pid=to_int(_xtext(p, "pid")),
            process_name=_xtext(p, "process_name") or "",
            used_bytes=to_bytes(_xtext(p, "used_memory")),
            type=_xtext(p, "type"),
            gi_id=to_int(_xtext(p, "gpu_instance_id")),
            ci_id=to_int(_xtext(p, "compute_instance_id")),
        )
        for p in elem.findall("processes/process_info")
    ]
    migs = [
        MigDevice(
            gpu_index=index,
            mig_index=to_int(_xtext(m, "index")),
            gi_id=to_int(_xtext(m, "gpu_instance_id")),
            ci_id=to_int(_xtext(m, "compute_instance_id")),
            memory_total_bytes=to_bytes(_xtext(m, "fb_memory_usage/total")),
            memory_used_bytes=to_bytes(_xtext(m, "fb_memory_usage/used")),
        )
        for m in elem.findall("mig_devices/mig_device")
    ]
    return gpu, processes, migs


def parse(text: str) -> SmiProbe | None:
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
                top[elem.tag] = version(elem.text)
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
