"""probe_local against a real fake ``nvidia-smi`` executable on PATH, and read_capture on real files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from planner.errors import SmiError
from planner.hardware.captures import MIB, PROBE_QUERY_FIELDS
from planner.hardware.probe import MAX_CAPTURE_BYTES, probe_local, read_capture

DATA = Path(__file__).parents[2] / "data" / "nvidia-smi"

QUERY_2X3090 = (
    "0, NVIDIA GeForce RTX 3090, 24576, 22943, 8.6, GPU-00000000-0000-0000-0000-000000000000, "
    "00000000:09:00.0, 560.35.05, [N/A]\n"
    "1, NVIDIA GeForce RTX 3090, 24576, 22943, 8.6, GPU-11111111-1111-1111-1111-111111111111, "
    "00000000:0A:00.0, 560.35.05, [N/A]\n"
)
INVALID_FIELD = 'Field "compute_cap" is not a valid field to query.\n'
HAS_FAILED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
    "NVIDIA driver is installed and running.\n"
)

# The fake answers per sub-command from files beside it: <name>.out (stdout) and <name>.rc (exit code).
FAKE = """#!/bin/sh
here=$(dirname "$0")
printf '%s\\n' "$*" >> "$here/argv.log"
case "$1" in
  --query-gpu=*) part=query ;;
  topo) part=topo ;;
  "") part=table ;;
  *) part=other ;;
esac
if [ -f "$here/$part.sleep" ]; then sleep "$(cat "$here/$part.sleep")"; fi
[ -f "$here/$part.out" ] && cat "$here/$part.out"
exit "$(cat "$here/$part.rc" 2>/dev/null || echo 0)"
"""


class Fake:
    """A directory holding the fake nvidia-smi, first on PATH."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def answer(self, part: str, out: str = "", rc: int = 0, sleep: float | None = None) -> None:
        (self.dir / f"{part}.out").write_text(out, encoding="utf-8")
        (self.dir / f"{part}.rc").write_text(str(rc), encoding="utf-8")
        if sleep is not None:
            (self.dir / f"{part}.sleep").write_text(str(sleep), encoding="utf-8")

    def calls(self) -> list[str]:
        log = self.dir / "argv.log"
        return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(FAKE, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return Fake(bin_dir)


def _fixture(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_query_table_and_topology_are_merged(fake: Fake) -> None:
    fake.answer("query", QUERY_2X3090)
    fake.answer("table", _fixture("2xRTX3090_smi_560_procs-vLLM.txt"))
    fake.answer("topo", _fixture("2xRTX3090_topo_NV4-bridge_560.txt"))
    probe = probe_local()
    assert [g.name for g in probe.gpus] == ["NVIDIA GeForce RTX 3090"] * 2
    assert [g.compute_capability for g in probe.gpus] == ["8.6", "8.6"]
    assert [g.memory_total_bytes for g in probe.gpus] == [24576 * MIB] * 2
    assert probe.driver_version == "560.35.05" and probe.cuda_version == "12.6"
    assert [p.pid for p in probe.processes] == [2921, 2922]
    assert probe.interconnect == "nvlink"
    assert probe.formats == ("csv", "table", "topo")
    assert fake.calls() == [
        f"--query-gpu={','.join(PROBE_QUERY_FIELDS)} --format=csv,noheader,nounits",
        "",
        "topo -m",
    ]


def test_old_driver_falls_back_to_the_table(fake: Fake) -> None:
    fake.answer("query", INVALID_FIELD, rc=2)
    fake.answer("table", _fixture("1xT4_smi_470_ECCoff_16127MiB.txt"))
    fake.answer("topo", "", rc=255)
    probe = probe_local()
    assert [(g.name, g.memory_total_bytes) for g in probe.gpus] == [("Tesla T4", 16127 * MIB)]
    assert probe.driver_version == "470.82.01" and probe.interconnect is None
    assert probe.formats == ("table",)


def test_optional_parts_may_fail(fake: Fake) -> None:
    fake.answer("query", QUERY_2X3090)
    fake.answer("table", HAS_FAILED, rc=9)
    fake.answer("topo", "garbage\n", rc=0)
    probe = probe_local()
    assert len(probe.gpus) == 2 and probe.cuda_version is None and probe.topology is None


def test_missing_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SmiError) as info:
        probe_local()
    assert str(info.value) == (
        "no nvidia-smi, amd-smi or rocm-smi on PATH; name a GPU with --gpu NAME "
        "or pass a saved capture with --from-file FILE"
    )


# A fake AMD tool: answers each argument list from <tool>.<name>.out files beside it.
FAKE_AMD = """#!/bin/sh
here=$(dirname "$0")
tool=$(basename "$0")
printf '%s %s\\n' "$tool" "$*" >> "$here/argv.log"
case "$*" in
  "") part=plain ;;
  static) part=static ;;
  "metric -m") part=metric ;;
  "--showproductname --showmeminfo vram") part=meminfo ;;
  *) part=other ;;
esac
[ -f "$here/$tool.$part.out" ] && cat "$here/$tool.$part.out"
exit "$(cat "$here/$tool.$part.rc" 2>/dev/null || echo 0)"
"""
AMD_DATA = Path(__file__).parents[2] / "data" / "amd-smi"


def _amd_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *tools: str) -> Path:
    """Only the named AMD tools on PATH (no nvidia-smi)."""
    bin_dir = tmp_path / "amdbin"
    bin_dir.mkdir()
    for tool in tools:
        script = bin_dir / tool
        script.write_text(FAKE_AMD, encoding="utf-8")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return bin_dir


def test_rocm_smi_table_and_meminfo_are_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No nvidia-smi and no amd-smi: rocm-smi's table (device ids, partitions) and --showmeminfo (bytes) merge.
    The ms-swift capture: 8 x 0x74a2 in SPX/NPS1, VRAM Total Memory (B) 206141652992 each."""
    bin_dir = _amd_tools(tmp_path, monkeypatch, "rocm-smi")
    (bin_dir / "rocm-smi.plain.out").write_text((AMD_DATA / "rocm-smi_8xMI308X-0x74a2_node-ids-layout.txt").read_text())
    (bin_dir / "rocm-smi.meminfo.out").write_text(
        (AMD_DATA / "rocm-smi-u-showmeminfo-vram_8xMI308X-0x74a2.txt").read_text())
    probe = probe_local()
    assert len(probe.gpus) == 8 and all(g.vendor == "amd" for g in probe.gpus)
    assert {g.pci_device_id for g in probe.gpus} == {"0x74a2"}
    assert {g.memory_total_bytes for g in probe.gpus} == {206_141_652_992}
    assert {g.compute_partition for g in probe.gpus} == {"SPX"}
    assert (bin_dir / "argv.log").read_text().splitlines() == [
        "rocm-smi ", "rocm-smi --showproductname --showmeminfo vram"]


def test_amd_smi_first_and_rocm_smi_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """amd-smi is tried first; when it fails (the NO_PERM capture), rocm-smi still answers."""
    bin_dir = _amd_tools(tmp_path, monkeypatch, "amd-smi", "rocm-smi")
    (bin_dir / "amd-smi.static.out").write_text((AMD_DATA / "amd-smi-static_4xMI300A+4xCPU_readme.txt").read_text())
    probe = probe_local()
    assert [g.name for g in probe.gpus] == ["MI300A"] * 4 and probe.gpus[0].memory_total_bytes == 64_289 * MIB
    assert probe.source == "amd-smi"
    (bin_dir / "amd-smi.static.out").write_text(
        (AMD_DATA / "amd-smi_error_unable-to-detect-gpus_syntaxwarning_6.2.4.txt").read_text())
    (bin_dir / "amd-smi.static.rc").write_text("1")
    (bin_dir / "rocm-smi.plain.out").write_text((AMD_DATA / "rocm-smi_1xMI300X_model-rev-name-layout.txt").read_text())
    probe = probe_local()
    assert [g.name for g in probe.gpus] == ["AMD Instinct MI300X"] and probe.source == "rocm-smi"


def test_amd_tool_failing_is_quoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _amd_tools(tmp_path, monkeypatch, "rocm-smi")
    (bin_dir / "rocm-smi.plain.out").write_text(
        (AMD_DATA / "rocm-smi_error_driver-not-initialized_rocm6.0.txt").read_text())
    with pytest.raises(SmiError) as info:
        probe_local()
    assert "Driver not initialized (amdgpu not found in modules)" in str(info.value)
    assert "rocm-smi" in str(info.value)


def test_timeout_kills_nvidia_smi(fake: Fake) -> None:
    fake.answer("query", QUERY_2X3090, sleep=30)
    started = time.monotonic()
    with pytest.raises(SmiError, match=r"did not finish within 0\.5 s \(timeout\)"):
        probe_local(timeout_s=0.5)
    assert time.monotonic() - started < 10


def test_failure_exit_quotes_first_line(fake: Fake) -> None:
    fake.answer("query", HAS_FAILED, rc=9)
    with pytest.raises(SmiError) as info:
        probe_local()
    message = str(info.value)
    assert "exit 9" in message and "\"NVIDIA-SMI has failed because it couldn't communicate" in message
    assert "\n" not in message


def test_failure_of_the_fallback_table(fake: Fake) -> None:
    fake.answer("query", INVALID_FIELD, rc=2)
    fake.answer("table", "No devices were found\n", rc=6)
    with pytest.raises(SmiError, match=r'exit 6.*"No devices were found"'):
        probe_local()


# ------------------------------------------------------------------------------------- read_capture


def test_read_capture_fixture() -> None:
    probe = read_capture(DATA / "8xH100-SXM_smi_565.txt")
    assert len(probe.gpus) == 8 and probe.source.endswith("8xH100-SXM_smi_565.txt")


def test_read_capture_failure_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "saved.txt"
    path.write_bytes((DATA / "fail_No-devices-were-found_trailing-spaces.txt").read_bytes())
    with pytest.raises(SmiError) as info:
        read_capture(path)
    assert str(info.value) == f'{path}: nvidia-smi failed: "No devices were found"'


def test_read_capture_utf16_powershell_redirect(tmp_path: Path) -> None:
    path = tmp_path / "win.txt"
    path.write_bytes(_fixture("1xRTX4070_smi_550.txt").encode("utf-16"))
    assert read_capture(path).gpus[0].name == "NVIDIA GeForce RTX 4070"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\x80\x81 not utf-8"), "not a UTF-8 text file"),
        (lambda p: p.write_bytes(b"a" * (MAX_CAPTURE_BYTES + 1)), "larger than the 8 MiB"),
        (lambda p: p.write_text("", encoding="utf-8"), "no GPUs recognised in"),
    ],
    ids=["missing", "directory", "not-utf8", "too-large", "empty"],
)
def test_read_capture_errors(tmp_path: Path, setup: object, message: str) -> None:
    path = tmp_path / "capture.txt"
    setup(path)  # type: ignore[operator]
    with pytest.raises(SmiError, match=message) as info:
        read_capture(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_read_capture_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "locked.txt"
    path.write_text("x", encoding="utf-8")
    path.chmod(0)
    with pytest.raises(SmiError, match="cannot read"):
        read_capture(path)
