"""The live GPU probe and saved-capture reader: the only module that runs subprocesses.

:func:`probe_local` runs ``nvidia-smi``, or on an AMD machine ``amd-smi`` / ``rocm-smi`` (never through
a shell), and hands their output to the pure parsers in :mod:`planner.hardware.captures`;
:func:`read_capture` reads a saved capture file.
Every failure is a :class:`planner.errors.SmiError` (exit code 2) with a one-line message.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from planner.errors import SmiError
from planner.files import read_bounded
from planner.hardware.captures import PROBE_QUERY_FIELDS, SmiProbe, merge_probes, parse_probe_text

__all__ = ["MAX_CAPTURE_BYTES", "probe_local", "read_capture"]

MAX_CAPTURE_BYTES = 8 * 1024 * 1024
"""Largest capture file read_capture accepts (an 8-GPU ``-q -x`` is about 250 KiB)."""

_NOT_FOUND = (
    "no nvidia-smi, amd-smi or rocm-smi on PATH; name a GPU with --gpu NAME or pass a saved capture with "
    "--from-file FILE"
)
# AMD: what each tool is asked, in order; the outputs are merged. amd-smi's `static` holds the market name,
# VRAM size and partition modes and `metric -m` the VRAM in use (amd-smi docs, "amd-smi static"/"metric");
# rocm-smi's concise table holds the device ids and partitions, `--showproductname --showmeminfo vram` the
# names and bytes (ROCm SMI docs).
_AMD_SMI_RUNS = (["static"], ["metric", "-m"])
_ROCM_SMI_RUNS = ([], ["--showproductname", "--showmeminfo", "vram"])
_QUERY_ARGS = ("--query-gpu=" + ",".join(PROBE_QUERY_FIELDS), "--format=csv,noheader,nounits")


@dataclass(frozen=True)
class _Run:
    """What one nvidia-smi invocation printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def first_line(self) -> str:
        for line in (self.stdout + "\n" + self.stderr).splitlines():
            if line.strip():
                return line.strip()
        return "(no output)"

    @property
    def command(self) -> str:
        return " ".join([Path(self.argv[0]).name, *self.argv[1:]])


def _run(argv: list[str], timeout_s: float) -> _Run:
    """Run ``argv`` without a shell; kill its whole process group if it outlives ``timeout_s``."""
    posix = os.name == "posix"
    try:
        proc = subprocess.Popen(  # fixed argv, no shell
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=posix,
        )
    except OSError as exc:
        raise SmiError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        _kill(proc, posix)
        command = " ".join([Path(argv[0]).name, *argv[1:]])
        raise SmiError(
            f"{command} did not finish within {timeout_s:g} s (timeout); the GPU driver may be hung"
        ) from exc
    return _Run(tuple(argv), proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _kill(proc: subprocess.Popen[bytes], posix: bool) -> None:
    try:
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass  # already gone
    proc.communicate()


def _failed(run: _Run) -> SmiError:
    return SmiError(f'{run.command} failed (exit {run.returncode}): "{run.first_line}"')


def _query(exe: str, timeout_s: float) -> SmiProbe | None:
    """The CSV query; None when this driver does not know one of the fields (then read the table)."""
    run = _run([exe, *_QUERY_ARGS], timeout_s)
    if run.returncode != 0:
        if "is not a valid field" in run.first_line:
            return None
        raise _failed(run)
    return parse_probe_text(run.stdout, source="nvidia-smi --query-gpu", csv_fields=PROBE_QUERY_FIELDS)


def _optional(exe: str, args: list[str], timeout_s: float) -> SmiProbe | None:
    """A run whose failure only costs detail: None (and no error) when it fails."""
    try:
        run = _run([exe, *args], timeout_s)
        if run.returncode != 0:
            return None
        return parse_probe_text(run.stdout, source=run.command)
    except SmiError:
        return None


def probe_local(timeout_s: float = 10.0) -> SmiProbe:
    """Probe this machine's GPUs: ``--query-gpu`` CSV, the default table, and ``topo -m``, merged.

    The table adds the CUDA version and processes (and replaces the query on drivers that do not know
    one of its fields, such as ``compute_cap`` before 510); ``topo -m`` adds the interconnect. Both are
    optional when the query worked.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return _probe_amd(timeout_s)
    query = _query(exe, timeout_s)
    if query is None:
        table_run = _run([exe], timeout_s)
        if table_run.returncode != 0:
            raise _failed(table_run)
        table: SmiProbe | None = parse_probe_text(table_run.stdout, source="nvidia-smi")
    else:
        table = _optional(exe, [], timeout_s)
    topo = _optional(exe, ["topo", "-m"], timeout_s)
    probes = [p for p in (query, table, topo) if p is not None]
    return replace(merge_probes(*probes), source="nvidia-smi")


def _probe_amd(timeout_s: float) -> SmiProbe:
    """amd-smi (ROCm 6.0 and later), else rocm-smi: the first run must work, the rest only add detail."""
    tools = [(exe, runs) for exe, runs in ((shutil.which("amd-smi"), _AMD_SMI_RUNS),
                                           (shutil.which("rocm-smi"), _ROCM_SMI_RUNS)) if exe is not None]
    if not tools:
        raise SmiError(_NOT_FOUND)
    error: SmiError | None = None
    for exe, (first, *rest) in tools:
        run = _run([exe, *first], timeout_s)
        try:
            if run.returncode != 0:
                raise _failed(run)
            probe = parse_probe_text(run.stdout, source=run.command)
        except SmiError as exc:  # a broken amd-smi: rocm-smi may still answer
            error = error or exc
            continue
        extra = [p for p in (_optional(exe, args, timeout_s) for args in rest) if p is not None]
        return replace(merge_probes(probe, *extra), source=Path(exe).name)
    assert error is not None
    raise error


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with a BOM (PowerShell's ``>`` writes that)."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SmiError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); save the tool's output as text"
        ) from exc


def read_capture(path: Path) -> SmiProbe:
    """Parse a saved capture (any nvidia-smi, rocm-smi or amd-smi format parse_probe_text knows)."""
    path = Path(path)
    data = read_bounded(path, limit=MAX_CAPTURE_BYTES, what="a GPU probe capture", error=SmiError)
    return parse_probe_text(_decode(data, path), source=str(path))
