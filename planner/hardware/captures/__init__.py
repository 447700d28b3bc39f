"""Read GPU probe output, live or saved, into one :class:`SmiProbe`. Pure: no I/O, no subprocesses.

One module per capture format; a text may hold several (a collect_env report has a GPU list and a
topology), so every parser reads the same lines and claims the ones it understood:

* ``nvidia_table``: the default ``nvidia-smi`` table (drivers 367 to 610), its MIG and process boxes.
* ``nvidia_list``: ``nvidia-smi -L`` and collect_env's GPU list.
* ``nvidia_csv``: ``--query-gpu`` / ``--query-compute-apps`` CSV, with or without header and units.
* ``nvidia_xml``: ``nvidia-smi -q -x``.
* ``nvidia_topo``: ``nvidia-smi topo -m`` matrices (and ``topo -p2p`` grids, so they are not misread).
* ``nvidia_version``: ``nvidia-smi --version``.
* ``rocm_smi`` and ``amd_smi``: AMD's tools (tables, ``--json``, ``--csv``, memory and partition views).

:func:`parse_probe_text` runs them all and merges what they found (:mod:`.merge`). A capture of a tool
failing, and input with nothing recognisable, raise :class:`planner.errors.SmiError`; nothing else escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from planner.errors import SmiError
from planner.hardware.captures import (
    amd_smi,
    nvidia_csv,
    nvidia_list,
    nvidia_table,
    nvidia_topo,
    nvidia_version,
    nvidia_xml,
    rocm_smi,
)
from planner.hardware.captures.merge import merge_probes
from planner.hardware.captures.model import (
    MIB,
    PROBE_QUERY_FIELDS,
    MigDevice,
    SmiGpu,
    SmiProbe,
    SmiProcess,
    Topology,
)
from planner.hardware.captures.values import NVIDIA_FAILURES, FailurePatterns, clean_lines, find_failure

__all__ = [
    "MIB",
    "PROBE_QUERY_FIELDS",
    "MigDevice",
    "SmiGpu",
    "SmiProbe",
    "SmiProcess",
    "Topology",
    "merge_probes",
    "parse_probe_text",
]

LineParser = Callable[[Sequence[str], set[int]], "SmiProbe | list[SmiProbe] | None"]

# Order matters: a parser claims the lines it read, and later ones skip them. The table comes before
# the topology (a collect_env report holds both), and the line-by-line formats come last.
_LINE_PARSERS: tuple[LineParser, ...] = (
    rocm_smi.parse,  # AMD first: they claim their own lines (amd-smi's box, rocm-smi's CSV) before nvidia's
    amd_smi.parse,
    nvidia_table.parse,
    nvidia_topo.parse,
    nvidia_list.parse,
    nvidia_version.parse,
)


# Every tool's "I failed" lines: a capture holding one and no GPU is an error quoting it. A new format's
# module adds its own tuple here.
_FAILURES: FailurePatterns = (*NVIDIA_FAILURES, *rocm_smi.FAILURES, *amd_smi.FAILURES)

_LOST_RE = re.compile(r"Unable to determine the device handle for GPU\s*([0-9A-Fa-f:.]+): (.+)")


def _lost_devices(lines: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(bus id, reason) of each GPU nvidia-smi could not reach: "... device handle for GPU 0000:3B:00.0: GPU is lost".

    nvidia-smi prints this line in place of a GPU the driver lost (fallen off the bus, Xid 79); merged with
    another capture that lists that bus id, the GPU is marked faulty (see merge_probes).
    """
    found = (_LOST_RE.fullmatch(line.strip()) for line in lines)
    return tuple(dict.fromkeys((m.group(1), m.group(2).split(". ")[0].rstrip(".")) for m in found if m))


def _found(result: SmiProbe | list[SmiProbe] | None) -> list[SmiProbe]:
    if result is None:
        return []
    return list(result) if isinstance(result, list) else [result]


def parse_probe_text(
    text: str, source: str = "<input>", *, csv_fields: Sequence[str] | None = None
) -> SmiProbe:
    """Parse GPU probe output of any recognised format (several may share one text).

    ``csv_fields`` names the columns of a headerless ``nvidia-smi --format=csv,noheader`` capture;
    without it such columns are identified by their values where that is unambiguous.

    Raises SmiError when the text shows the tool failing (quoting its message) or holds nothing
    recognisable (empty, binary, garbage).
    """
    if not isinstance(text, str) or "\x00" in text:
        raise SmiError(f"no GPUs recognised in {source}: the input is binary, not GPU probe text")
    lines = clean_lines(text)
    claimed: set[int] = set()
    parts = _found(nvidia_xml.parse(text))
    for parser in _LINE_PARSERS:
        parts += _found(parser(lines, claimed))
    parts += _found(nvidia_csv.parse(lines, claimed, csv_fields))
    lost = _lost_devices(lines)
    if lost:
        parts.append(SmiProbe(lost_devices=lost))
    probe = merge_probes(*(replace(p, source=source) for p in parts))
    failure = find_failure(lines, _FAILURES)
    if failure is not None and not probe.gpus:
        raise SmiError(f'{source}: {failure.tool} failed: "{failure.message}"')
    if not (probe.gpus or probe.topology or probe.p2p or probe.mig_devices):
        raise SmiError(f"no GPUs recognised in {source}")
    if failure is not None:
        probe = replace(probe, warnings=(*probe.warnings, f'{failure.tool} also reported: "{failure.message}"'))
    return replace(probe, source=source)

