"""rocm-smi and amd-smi parsers against real captures (issue 20).

One test per file in tests/data/amd-smi. The expected values are typed from that directory's INDEX.md
("A correct parser reports" column), which was written from the captures by hand, not from the parser's
output. Memory: rocm-smi prints bytes; amd-smi prints "MB" that are MiB (written here as ``n * MIB``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.errors import InputError, SmiError
from planner.hardware.captures import MIB, SmiProbe, amd_smi, parse_probe_text, rocm_smi
from planner.hardware.captures.values import clean_lines

DATA = Path(__file__).parents[2] / "data" / "amd-smi"
NVIDIA = Path(__file__).parents[2] / "data" / "nvidia-smi"

Unchecked = EllipsisType
MI300X_B = 206141652992  # rocm-smi's VRAM Total Memory (B) of an MI300X (= 196592 MiB)
HUNG = "rocm-smi shows performance level 'unknown': the GPU does not answer (hung or lost)"


@dataclass(frozen=True)
class Expect:
    """What INDEX.md says a correct parser reports; ``...`` means "INDEX.md says nothing"."""

    count: int | Unchecked = ...
    at_least: int | Unchecked = ...
    names: tuple[str, ...] | str | Unchecked = ...  # a str: every GPU has that name
    total: tuple[int | None, ...] | int | Unchecked | None = ...  # bytes
    used: tuple[int | None, ...] | int | Unchecked | None = ...
    compute: tuple[str | None, ...] | str | Unchecked | None = ...
    memory_partition: tuple[str | None, ...] | str | Unchecked | None = ...
    gfx: tuple[str | None, ...] | str | Unchecked | None = ...
    bus: tuple[str | None, ...] | Unchecked = ...
    driver: str | Unchecked | None = ...
    rocm: str | Unchecked | None = ...
    unhealthy: tuple[int, ...] | Unchecked = ()
    error: tuple[str, str] | Unchecked = ...  # (tool, the quoted line)
    warning: str | Unchecked = ...  # a substring of one warning


def _per_gpu(value: object, n: int) -> tuple[object, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,) * n


EXPECTED: dict[str, Expect] = {
    # ---------------------------------------------------------------- rocm-smi concise tables
    "rocm-smi_1xMI300X_model-rev-name-layout.txt": Expect(
        count=1, names="AMD Instinct MI300X", total=None, compute="SPX", memory_partition="NPS1", driver=None
    ),
    "rocm-smi_4xMI300X_model-rev-name-layout.txt": Expect(
        count=4, names="AMD Instinct MI300X", total=None, compute="SPX", memory_partition="NPS1"
    ),
    "rocm-smi_8xMI308X-0x74a2_node-ids-layout.txt": Expect(
        count=8, names="", total=None, compute="SPX", memory_partition="NPS1"
    ),
    "rocm-smi_1xMI300X-VF-0x74b5_node-ids-layout_95pct.txt": Expect(
        count=1, names="", total=None, compute="SPX", memory_partition="NPS1"
    ),
    "rocm-smi_1xStrixHalo-0x1586_edge-layout_low-power-warning_indented.txt": Expect(
        count=1, names="", total=None, compute=None, memory_partition=None
    ),
    "rocm-smi_2xMI300X-CPX-NPS4_container_NA-partition-row.txt": Expect(
        count=2, names="", total=None, compute=("CPX", None), memory_partition=("NPS4", None), unhealthy=()
    ),
    "rocm-smi_4xMI100_dieedge-layout_rocm5_apptainer.txt": Expect(count=4, names="", total=None),
    "rocm-smi_2xGPU-R9700+iGPU_dieedge-layout_errors-interleaved.txt": Expect(
        count=2, names="", total=None, unhealthy=()
    ),
    "rocm-smi_1xGPU-hung_perf-unknown_rocm4.txt": Expect(
        count=1, names="", total=None, unhealthy=(0,), warning="one or more commands failed"
    ),
    # ---------------------------------------------------------------- rocm-smi GPU[n] views
    "rocm-smi-a_4xMI300X_showallinfo_driver-6.7.0.txt": Expect(
        count=4,
        names="AMD Instinct MI300X OAM",
        total=None,
        driver="6.7.0",
        compute="SPX",
        memory_partition="NPS1",
        bus=("0000:26:00.0", "0000:46:00.0", "0000:65:00.0", "0000:85:00.0"),
    ),
    "rocm-smi-u-showmeminfo-vram_8xMI308X-0x74a2.txt": Expect(
        count=8, names="", total=206141652992, used=(297611264,) + (297623552,) * 7
    ),
    "rocm-smi-showmeminfo-vram_1xGPU-4GB_vs-hipMemGetInfo.txt": Expect(
        count=1, names="", total=4278190080, used=108814336
    ),
    "rocm-smi-showproductname_1xMI100_rocm4.0_hex-series.txt": Expect(count=1, names="", total=None),
    "rocm-smi+showmeminfo_3xMI300A-TPX_memory-split.txt": Expect(
        count=3, names="", total=33580773376, used=8388608, compute="TPX", memory_partition="NPS1"
    ),
    "rocm-smi+showmeminfo_4xMI300X-QPX_full-memory-each.txt": Expect(
        count=4, names="", total=206141652992, used=297771008, compute="QPX", memory_partition="NPS1"
    ),
    "rocm-smi+showmeminfo_63xMI300X-CPX-NPS1_one-partition-missing.txt": Expect(
        count=63,
        names="",
        total=206141652992,
        used=(297771008,) * 32 + (297775104,) * 31,
        compute="CPX",
        memory_partition="NPS1",
    ),
    # ---------------------------------------------------------------- rocm-smi --csv / --json
    "rocm-smi-showproductname-csv_2xMI100.csv": Expect(
        count=2, names="Arcturus GL-XL [AMD Instinct MI100]", total=None
    ),
    "rocm-smi-showdriverversion-csv_kernel-version.csv": Expect(error=("", "no GPUs recognised")),
    "rocm-smi-showproductname-showmeminfo-showuniqueid-csv_RX6800+Raphael-iGPU.csv": Expect(
        count=2,
        names=("Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]", "Raphael"),
        total=(17163091968, 67108864),
        used=(692142080, 26079232),
        gfx=("gfx1030", "gfx1036"),
    ),
    "rocm-smi-showproductname-showuse-showmeminfo-csv_RX7900XT.csv": Expect(
        count=1, names="Radeon RX 7900 XT", total=21458059264, used=27856896, gfx="gfx1100"
    ),
    "rocm-smi-showproductname-showuse-showmeminfo-json_RX7900XT.json": Expect(
        count=1, names="Radeon RX 7900 XT", total=21458059264, used=27856896, gfx="gfx1100"
    ),
    "rocm-smi-showproductname-json_1xMI250X-GCD.json": Expect(
        count=1, names="AMD INSTINCT MI200 (MCM) OAM LC MBA HPE C2", total=None, gfx="gfx9010"
    ),
    # ---------------------------------------------------------------- rocm-smi failures
    "rocm-smi_error_driver-not-initialized_rocm6.0.txt": Expect(
        error=("rocm-smi", "ERROR:root:Driver not initialized (amdgpu not found in modules)")
    ),
    "rocm-smi_warning_no-amd-gpus_rocm5.0-vm.txt": Expect(error=("rocm-smi", "WARNING: No AMD GPUs specified")),
    "rocm-smi_warning_no-amd-gpus_no-banner-rules_mi50-egpu.txt": Expect(
        error=("rocm-smi", "WARNING: No AMD GPUs specified")
    ),
    # ---------------------------------------------------------------- amd-smi default view
    "amd-smi_16xMI300X-DPX-NPS1_default-view.txt": Expect(
        count=16,
        names="AMD Instinct MI300X",
        total=(196592 * MIB, 98296 * MIB) * 8,
        used=(283 * MIB, 492 * MIB) * 8,
        compute=("DPX", None) * 8,
        memory_partition=("NPS1", None) * 8,
        bus=tuple(f"0000:{b}:00.{f}" for b in ("05", "26", "46", "65", "85", "a6", "c6", "e5") for f in (0, 1)),
        driver=None,
        rocm="7.0.2",
    ),
    "amd-smi_1xMI300X-VF_default-view_rocm7.1.1.txt": Expect(
        count=1,
        names="AMD Instinct MI300X VF",
        total=196288 * MIB,
        used=285 * MIB,
        compute="SPX",
        memory_partition="NPS1",
        bus=("0000:ff:00.0",),
        driver="6.16.6",
        rocm="7.1.1",
    ),
    "amd-smi_1xStrixHalo-0x1586_default-view_indented.txt": Expect(
        count=1, names="", total=65536 * MIB, used=1013 * MIB, compute=None, driver=None, rocm="7.1.1"
    ),
    # ---------------------------------------------------------------- amd-smi GPU: n views, monitor, json
    "amd-smi-static_4xMI300A+4xCPU_readme.txt": Expect(
        count=4,
        names="MI300A",
        total=64289 * MIB,
        used=None,
        compute="SPX",
        memory_partition="NPS1",
        bus=("0000:01:00.0", "0001:01:00.0", "0002:01:00.0", "0003:01:00.0"),
        driver="6.9.0-rc5+",
    ),
    "amd-smi-static_MI350X_partial.txt": Expect(
        at_least=1, names=("AMD Instinct MI350X",), total=None, gfx="gfx950", bus=("0000:05:00.0",), driver="6.18.3"
    ),
    "amd-smi-static-partition_64xMI300X-CPX-NPS4_docs.txt": Expect(
        count=64, names="", total=None, compute="CPX", memory_partition="NPS4"
    ),
    "amd-smi-list_2xGPU_kfd-partition-ids.txt": Expect(
        count=2, names="", total=None, bus=("0000:23:00.0", "0000:26:00.0")
    ),
    "amd-smi-metric-m_1xAPU-512MB-carveout.txt": Expect(count=1, names="", total=512 * MIB, used=489 * MIB),
    "amd-smi-monitor-ptumv_8xMI300X.txt": Expect(
        count=8, names="", total=196300 * MIB, used=(283 * MIB,) * 4 + (284 * MIB,) + (283 * MIB,) * 3
    ),
    "amd-smi-static-asic-json_1xGraniteRidge-iGPU.json": Expect(
        count=1, names="Granite Ridge [Radeon Graphics]", total=None, gfx="gfx1036"
    ),
    # ---------------------------------------------------------------- amd-smi failures
    "amd-smi_error_driver-not-initialized_builtin-amdgpu_26.1.0.txt": Expect(
        error=("amd-smi", "ERROR:root:Unable to get devices, driver not initialized (amdgpu not found in modules)")
    ),
    "amd-smi_error_unable-to-detect-gpus_syntaxwarning_6.2.4.txt": Expect(
        error=("amd-smi", "ERROR: Unable to detect any GPU devices, check amdgpu version and module status")
    ),
    "amd-smi-set_error_NO_PERM_not-root_docs.txt": Expect(
        error=("amd-smi", "10 | AMDSMI_STATUS_NO_PERM - Permission Denied")
    ),
}


def _fixture_files() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if p.name != "INDEX.md")


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == _fixture_files()


def test_index_lists_every_fixture() -> None:
    index = (DATA / "INDEX.md").read_text(encoding="utf-8")
    assert "A correct parser reports" in index
    for name in _fixture_files():
        assert f"`{name}`" in index, name


def _check(probe: SmiProbe, exp: Expect) -> None:
    gpus = probe.gpus
    n = len(gpus)
    if exp.count is not ...:
        assert n == exp.count
    if exp.at_least is not ...:
        assert n >= exp.at_least
    assert all(g.vendor == "amd" for g in gpus)
    if exp.names is not ...:
        names = _per_gpu(exp.names, n)
        assert tuple(g.name for g in gpus)[: len(names)] == names
    for attr, want in (
        ("memory_total_bytes", exp.total),
        ("memory_used_bytes", exp.used),
        ("compute_partition", exp.compute),
        ("memory_partition", exp.memory_partition),
        ("gfx_version", exp.gfx),
        ("bus_id", exp.bus),
    ):
        if want is not ...:
            values = _per_gpu(want, n)
            assert tuple(getattr(g, attr) for g in gpus)[: len(values)] == values, attr
    if exp.driver is not ...:
        assert probe.driver_version == exp.driver
    if exp.rocm is not ...:
        assert probe.rocm_version == exp.rocm
    if exp.unhealthy is not ...:
        assert tuple(g.index for g in gpus if not g.healthy) == exp.unhealthy
    if exp.warning is not ...:
        assert any(exp.warning in w for w in probe.warnings), probe.warnings


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=sorted(EXPECTED))
def test_fixture(name: str) -> None:
    exp = EXPECTED[name]
    text = (DATA / name).read_text(encoding="utf-8")
    if exp.error is not ...:
        tool, message = exp.error
        with pytest.raises(SmiError) as info:
            parse_probe_text(text, source="saved.txt")
        if tool:
            assert str(info.value) == f'saved.txt: {tool} failed: "{message}"'
        else:
            assert str(info.value) == f"{message} in saved.txt"
        assert isinstance(info.value, InputError) and "\n" not in str(info.value)
        return
    _check(parse_probe_text(text, source=name), exp)


# ---------------------------------------------------------------------------------- details


def _parse(name: str) -> SmiProbe:
    return parse_probe_text((DATA / name).read_text(encoding="utf-8"), source=name)


def test_hung_gpu_is_flagged_not_dropped() -> None:
    probe = _parse("rocm-smi_1xGPU-hung_perf-unknown_rocm4.txt")
    (gpu,) = probe.gpus
    assert gpu.faults == (HUNG,) and gpu.performance_state == "unknown"
    assert gpu.health_problems == (HUNG,)


def test_partition_rows_are_logical_gpus_with_the_whole_card_printed() -> None:
    probe = _parse("rocm-smi+showmeminfo_63xMI300X-CPX-NPS1_one-partition-missing.txt")
    assert [g.index for g in probe.gpus] == list(range(63))
    assert {g.memory_total_bytes for g in probe.gpus} == {MI300X_B}  # as printed, not the 1/8 HIP sees
    assert probe.formats == ("rocm-smi",)


def test_driver_csv_merges_with_the_product_csv_of_the_same_machine() -> None:
    text = (DATA / "rocm-smi-showdriverversion-csv_kernel-version.csv").read_text(encoding="utf-8")
    text += (DATA / "rocm-smi-showproductname-csv_2xMI100.csv").read_text(encoding="utf-8")
    probe = parse_probe_text(text)
    assert probe.driver_version == "4.18.0-348.12.2.el8_5.x86_64"
    assert [g.name for g in probe.gpus] == ["Arcturus GL-XL [AMD Instinct MI100]"] * 2


def test_table_and_memory_views_of_one_machine_merge() -> None:
    table = (DATA / "rocm-smi_8xMI308X-0x74a2_node-ids-layout.txt").read_text(encoding="utf-8")
    memory = (DATA / "rocm-smi-u-showmeminfo-vram_8xMI308X-0x74a2.txt").read_text(encoding="utf-8")
    probe = parse_probe_text(table + "\n" + memory)
    assert len(probe.gpus) == 8
    assert {(g.compute_partition, g.memory_total_bytes) for g in probe.gpus} == {("SPX", MI300X_B)}
    assert [g.utilization_percent for g in probe.gpus] == [0] * 8


def test_amd_smi_cpu_blocks_are_not_gpus() -> None:
    probe = _parse("amd-smi-static_4xMI300A+4xCPU_readme.txt")
    assert [g.index for g in probe.gpus] == [0, 1, 2, 3]


def test_amd_smi_names_a_gpu_only_by_a_market_name() -> None:
    assert _parse("amd-smi_1xStrixHalo-0x1586_default-view_indented.txt").gpus[0].name == ""
    assert _parse("rocm-smi-showproductname_1xMI100_rocm4.0_hex-series.txt").gpus[0].name == ""


def test_amd_smi_ras_threshold_exceeded_is_a_fault() -> None:
    text = (DATA / "amd-smi-static_MI350X_partial.txt").read_text(encoding="utf-8")
    text = text.replace("BAD_PAGE_THRESHOLD_EXCEEDED: N/A", "BAD_PAGE_THRESHOLD_EXCEEDED: True")
    (gpu,) = parse_probe_text(text).gpus
    assert not gpu.healthy and "bad-page threshold" in gpu.faults[0]


def test_cut_amd_smi_view_is_partial() -> None:
    lines = (DATA / "amd-smi_1xMI300X-VF_default-view_rocm7.1.1.txt").read_text(encoding="utf-8").split("\n")
    probe = parse_probe_text("\n".join(lines[:10]))
    assert probe.partial and len(probe.gpus) == 1
    assert probe.gpus[0].memory_total_bytes == 196288 * MIB


def test_cut_rocm_smi_output_is_partial() -> None:
    lines = (DATA / "rocm-smi_4xMI300X_model-rev-name-layout.txt").read_text(encoding="utf-8").split("\n")
    probe = parse_probe_text("\n".join(lines[:9]))  # banner, title, 2 header lines, rule, 2 rows + names
    assert probe.partial and [g.name for g in probe.gpus] == ["AMD Instinct MI300X", "AMD Instinct MI300X"]


@pytest.mark.parametrize("module", [rocm_smi, amd_smi], ids=["rocm_smi", "amd_smi"])
@pytest.mark.parametrize(
    "text", ["", "hello world\n", "GPU 0: NVIDIA A100\n", "{not json", "[1, 2]\n", "a, b\n1, 2\n"]
)
def test_parsers_return_none_on_foreign_text(module: object, text: str) -> None:
    claimed: set[int] = set()
    assert module.parse(clean_lines(text), claimed) is None  # type: ignore[attr-defined]
    assert not claimed


@pytest.mark.parametrize("module", [rocm_smi, amd_smi], ids=["rocm_smi", "amd_smi"])
def test_no_nvidia_capture_is_claimed(module: object) -> None:
    for path in sorted(p for p in NVIDIA.rglob("*") if p.is_file() and p.suffix != ".md"):
        claimed: set[int] = set()
        lines = clean_lines(path.read_text(encoding="utf-8", errors="replace"))
        assert module.parse(lines, claimed) is None, path.name  # type: ignore[attr-defined]
        assert not claimed, path.name


def test_nvidia_parsers_find_no_gpu_in_amd_captures() -> None:
    for name in _fixture_files():
        text = (DATA / name).read_text(encoding="utf-8")
        try:
            probe = parse_probe_text(text)
        except SmiError:
            continue
        assert all(g.vendor == "amd" for g in probe.gpus), name
        assert probe.topology is None and not probe.processes and probe.cuda_version is None, name


def test_long_lines_are_skipped() -> None:
    text = (DATA / "rocm-smi-showmeminfo-vram_1xGPU-4GB_vs-hipMemGetInfo.txt").read_text(encoding="utf-8")
    padded = text.replace("VRAM Total Memory (B): 4278190080", "VRAM Total Memory (B): 4278190080" + " " * 5000)
    (gpu,) = parse_probe_text(padded).gpus
    assert gpu.memory_total_bytes is None and gpu.memory_used_bytes == 108814336


@pytest.mark.parametrize(
    "line",
    [
        "GPU[0] : " + "a:" * 2000,
        "GPU: 0\n" + "    " + "A " * 2000,
        "| AMD-SMI " + "1/" * 2000,
        "=" + " x" * 2000,
        "Device  Temp  Perf " + "0, " * 1300,
        "{" + '"card0": {' * 1000,
        "[" + "[" * 3000,
    ],
    ids=["kv", "block", "view", "rule", "commas", "json-nest", "json-list"],
)
def test_hostile_lines_parse_fast(line: str) -> None:
    text = "\n".join(["============ ROCm System Management Interface ============", *[line] * 200])
    start = time.perf_counter()
    with contextlib.suppress(SmiError):
        parse_probe_text(text)
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------------- fuzz: only SmiError escapes

_FIXTURE_TEXTS = [(DATA / n).read_text(encoding="utf-8") for n in sorted(EXPECTED)]
_ALPHABET = [*"|+-=:[]{}\",%/ \t\n.0123456789GPUCardVRAMTotalUsed()BSXNPAMDInstinctx°", "GPU[0]", "GPU: "]


def _parse_or_smierror(text: str) -> None:
    try:
        probe = parse_probe_text(text, source="fuzz")
    except SmiError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(probe, SmiProbe)
    assert probe.gpus or probe.topology or probe.p2p or probe.mig_devices


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_ALPHABET) | st.characters(), max_size=400).map("".join))
def test_fuzz_amd_flavoured_text(text: str) -> None:
    _parse_or_smierror(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_FIXTURE_TEXTS),
    st.integers(min_value=0, max_value=25000),
    st.integers(min_value=0, max_value=25000),
    st.text(max_size=20),
)
def test_fuzz_mangled_fixtures(text: str, cut: int, at: int, junk: str) -> None:
    _parse_or_smierror(text[:at] + junk + text[at:cut] if at < cut else text[:cut] + junk)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_FIXTURE_TEXTS), st.randoms(use_true_random=False))
def test_fuzz_shuffled_and_dropped_lines(text: str, rnd: object) -> None:
    lines = text.split("\n")
    rnd.shuffle(lines)  # type: ignore[attr-defined]
    kept = [line for line in lines if rnd.random() > 0.3]  # type: ignore[attr-defined]
    _parse_or_smierror("\n".join(kept))
