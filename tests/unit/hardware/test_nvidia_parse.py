"""nvidia-smi parsers against real captures.

One test per file in tests/data/nvidia-smi. The expected values are transcribed from that directory's
INDEX.md ("A correct parser reports" column), not taken from the parser's output. Compute capability is
asserted only where the capture prints it: for tables, INDEX.md's "CC" is a catalog lookup by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.errors import InputError, SmiError
from planner.hardware.captures import (
    MIB,
    PROBE_QUERY_FIELDS,
    SmiGpu,
    SmiProbe,
    Topology,
    merge_probes,
    parse_probe_text,
)

DATA = Path(__file__).parents[2] / "data" / "nvidia-smi"

Unchecked = EllipsisType
HAS_FAILED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)
NV12_ALL = "NV12"


@dataclass(frozen=True)
class Expect:
    """What INDEX.md says a correct parser reports. ``...`` means "INDEX.md says nothing"."""

    count: int | Unchecked = ...  # exact number of GPUs
    at_least: int | Unchecked = ...  # partial captures: "≥N GPUs"
    names: tuple[str, ...] | str | Unchecked = ...  # a str: every GPU has that name
    total_mib: tuple[int | None, ...] | int | Unchecked = ...
    used_mib: tuple[int | None, ...] | int | Unchecked = ...
    driver: str | Unchecked | None = ...
    cuda: str | Unchecked | None = ...
    mig: str | Unchecked | None = ...  # MIG mode of every GPU
    processes: tuple[tuple[int, int | None], ...] | Unchecked = ...  # (pid, MiB)
    min_processes: int | Unchecked = ...
    mig_devices_mib: tuple[int, ...] | Unchecked = ...
    cc: tuple[str, ...] | Unchecked = ...  # only where the capture prints compute_cap
    uuids: tuple[str, ...] | Unchecked = ...
    topo_gpus: int | Unchecked = ...
    nics: int | Unchecked = ...
    links: dict[tuple[int, int], str] = field(default_factory=dict)
    all_links: str | Unchecked = ...  # every GPU pair shown has this link
    interconnect: str | Unchecked | None = ...
    nvlink_pairs: tuple[tuple[int, int], ...] | Unchecked = ...
    cpu_affinity: tuple[str | None, ...] | Unchecked = ...
    numa: tuple[str | None, ...] | Unchecked = ...
    unhealthy: tuple[int, ...] | Unchecked = ...
    partial: bool | Unchecked = ...
    error: str | Unchecked = ...  # the quoted nvidia-smi message


EXPECTED: dict[str, Expect] = {
    # ---- A1. Datacenter GPUs
    "8xH100-SXM_smi_565.txt": Expect(
        count=8,
        names="NVIDIA H100 80GB HBM3",
        total_mib=81559,
        used_mib=1,
        driver="565.57.01",
        cuda="12.7",
        mig="Disabled",
        processes=(),
    ),
    "1xH100-SXM_smi_545_slurm1of8.txt": Expect(
        count=1,
        names="NVIDIA H100 80GB HBM3",
        total_mib=81559,
        used_mib=2,
        driver="545.23.08",
        cuda="12.3",
        mig="Disabled",
    ),
    "2xH100-NVL_smi_550.txt": Expect(
        count=2,
        names="NVIDIA H100 NVL",
        total_mib=95830,
        driver="550.54.14",
        cuda="12.4",
        mig="Disabled",
    ),
    "2xH100-PCIe_smi_565_partial.txt": Expect(
        count=2,
        names="NVIDIA H100 PCIe",
        total_mib=81559,
        driver="565.57.01",
        cuda="12.7",
        partial=True,
    ),
    "1xH100-PCIe_smi_580_VM-busid_vLLM-proc.txt": Expect(
        count=1,
        names="NVIDIA H100 PCIe",
        total_mib=81559,
        used_mib=47809,
        driver="580.105.08",
        cuda="13.0",
        processes=((334426, 47800),),
        partial=True,
    ),
    "1xH200_smi_580_watch-header_procs.txt": Expect(
        count=1,
        names="NVIDIA H200",
        total_mib=143771,
        used_mib=16057,
        driver="580.65.06",
        cuda="13.0",
        processes=((3829683, 16046),),
    ),
    "1xGH200_smi_550.txt": Expect(
        count=1,
        names="NVIDIA GH200 480GB",
        total_mib=97871,
        driver="550.127.05",
        cuda="12.4",
    ),
    "NxH20_smi_580_partial.txt": Expect(
        at_least=2,
        names="NVIDIA H20",
        total_mib=97871,
        driver="580.95.05",
        cuda="13.0",
        partial=True,
    ),
    "8xA100-SXM4-40GB_smi_535.txt": Expect(
        count=8,
        names="NVIDIA A100-SXM4-40GB",
        total_mib=40960,
        driver="535.161.08",
        cuda="12.2",
        mig="Disabled",
    ),
    "4xA100-SXM4-80GB_smi_555.txt": Expect(
        count=4,
        names="NVIDIA A100-SXM4-80GB",
        total_mib=81920,
        driver="555.42.02",
        cuda="12.5",
    ),
    "1xA100-SXM4-40GB_smi_450_i0.txt": Expect(
        count=1,
        names="A100-SXM4-40GB",
        total_mib=40537,
        driver="450.80.02",
        cuda="11.0",
        mig="Disabled",
    ),
    "NxA100-SXM-80GB_smi_495_MIGenabled_partial.txt": Expect(
        at_least=2,
        names="NVIDIA A100-SXM...",
        total_mib=81251,
        driver="495.29.05",
        cuda="11.5",
        mig="Enabled",
    ),
    "1xA30_smi_535_MIG-enabled_3instances.txt": Expect(
        count=1,
        names="NVIDIA A30",
        total_mib=24576,
        used_mib=50,
        driver="535.183.01",
        cuda="12.2",
        mig="Enabled",
        mig_devices_mib=(11968, 5952, 5952),
        processes=(),
    ),
    "1xA30_L_535_MIG.txt": Expect(count=1, names="NVIDIA A30", mig_devices_mib=(0, 0, 0)),  # -L: no memory
    "4xA100-80GB-PCIe_smi_595_two-GPUs-ERR.txt": Expect(
        count=4,
        names="NVIDIA A100 80GB PCIe",
        total_mib=81920,
        driver="595.71.05",
        cuda="13.2",
        unhealthy=(2, 3),
    ),
    "1xA10G_smi_535.txt": Expect(
        count=1,
        names="NVIDIA A10G",
        total_mib=23028,
        used_mib=8722,
        driver="535.247.01",
        cuda="12.2",
        partial=True,
    ),
    "10xA40_smi_550.txt": Expect(
        count=10, names="NVIDIA A40", total_mib=46068, driver="550.127.05", cuda="12.4"
    ),
    "1xL40S_smi_550.txt": Expect(
        count=1, names="NVIDIA L40S", total_mib=46068, driver="550.127.05", cuda="12.4"
    ),
    "8xV100-SXM2-16GB_smi_550.txt": Expect(
        count=8,
        names="Tesla V100-SXM2-16GB",
        total_mib=16384,
        driver="550.127.05",
        cuda="12.4",
    ),
    "1xV100-SXM2-32GB_smi_525_emptyprocs.txt": Expect(
        count=1,
        names="Tesla V100-SXM2...",
        total_mib=32768,
        used_mib=308,
        driver="525.105.17",
        cuda="12.0",
        processes=(),
        partial=False,
    ),
    "1xV100-SXM2-16GB_smi_450-vs-418_Colab_MIG-ERR.txt": Expect(
        count=1,
        total_mib=16130,
        driver="418.67",
        cuda="10.1",
        mig=None,
        partial=True,
    ),
    "1xT4_smi_470_ECCoff_16127MiB.txt": Expect(
        count=1,
        names="Tesla T4",
        total_mib=16127,
        driver="470.82.01",
        cuda="11.4",
    ),
    "1xT4_smi_510_Xorg-procs_partial.txt": Expect(
        count=1,
        names="Tesla T4",
        total_mib=15360,
        used_mib=29,
        driver="510.39.01",
        cuda="11.6",
        min_processes=1,
        partial=True,
    ),
    "4xP100-PCIE_smi_515_partial.txt": Expect(
        count=1,
        names="Tesla P100-PCIE...",
        total_mib=16384,
        driver="515.65.01",
        cuda="11.7",
        partial=True,
    ),
    "NxK80_smi_418_noMIGrow_partial.txt": Expect(
        at_least=4,
        names="Tesla K80",
        total_mib=(11441, 11441, 11441, None),
        driver="418.87.00",
        cuda="10.1",
        partial=True,
    ),
    # ---- A2. Consumer / workstation
    "8xRTX4090_smi_550.txt": Expect(
        count=8,
        names="NVIDIA GeForce RTX 4090",
        total_mib=24564,
        driver="550.127.05",
        cuda="12.4",
    ),
    "2xRTX3090_smi_560.txt": Expect(
        count=2,
        names="NVIDIA GeForce RTX 3090",
        total_mib=24576,
        driver="560.35.03",
        cuda="12.6",
    ),
    "2xRTX3090_smi_560_procs-vLLM.txt": Expect(
        count=2,
        names="NVIDIA GeForce RTX 3090",
        total_mib=24576,
        used_mib=22943,
        driver="560.35.05",
        cuda="12.6",
        processes=((2921, 22934), (2922, 22934)),
    ),
    "1xRTX5090_smi_570.txt": Expect(
        count=1,
        names="NVIDIA GeForce RTX 5090",
        total_mib=32607,
        driver="570.124.06",
        cuda="12.8",
    ),
    "1xRTX5090_smi_595.txt": Expect(
        count=1,
        names="NVIDIA GeForce RTX 5090",
        total_mib=32607,
        used_mib=492,
        driver="595.71.05",
        cuda="13.2",
        partial=True,
    ),
    "1xRTX5090+1xRTX4090_smi_580_mixed.txt": Expect(
        count=2,
        names=("NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090"),
        total_mib=(32607, 24564),
        driver="580.82.09",
        cuda="13.0",
        partial=True,
    ),
    "1xRTX5070_smi_575_cudaNA_noTopBorder.txt": Expect(
        count=1,
        names="NVIDIA GeForce RTX 5070",
        total_mib=12227,
        used_mib=1731,
        driver="575.64.03",
        cuda=None,
        partial=True,
    ),
    "1xRTX4070_smi_550.txt": Expect(
        count=1,
        names="NVIDIA GeForce RTX 4070",
        total_mib=12282,
        used_mib=430,
        driver="550.40.07",
        cuda="12.4",
    ),
    "1xRTX3050_smi_550.120_twoPartVersion.txt": Expect(
        count=1,
        names="NVIDIA GeForce RTX 3050",
        total_mib=8192,
        used_mib=7358,
        driver="550.120",
        cuda="12.4",
    ),
    "1xGTX1050Ti_smi_535.txt": Expect(
        count=1,
        names="NVIDIA GeForce GTX 1050 Ti",
        total_mib=4096,
        driver="535.161.07",
        cuda="12.2",
    ),
    "1xTITANXp_smi_450.txt": Expect(count=1, names="TITAN Xp", total_mib=12196, driver="450.57", cuda="11.0"),
    "1xQuadroK3100M-Laptop_smi_367_shortBusId.txt": Expect(
        count=1,
        names="Quadro K3100M",
        total_mib=4034,
        used_mib=46,
        driver="367.48",
        cuda=None,
    ),
    "2xQuadroRTX4000_smi_535_partial.txt": Expect(
        count=2,
        names="Quadro RTX 4000",
        total_mib=(8192, None),
        driver="535.129.03",
        cuda="12.2",
        partial=True,
    ),
    # ---- A3. WSL / Windows
    "WSL_1xRTX3060-Laptop_smi_545-546_cudaERR.txt": Expect(
        count=1,
        total_mib=6144,
        used_mib=816,
        driver="546.80",
        cuda=None,
        partial=True,
    ),
    "WSL_1xRTX2070_smi_460_WDDM_procs.txt": Expect(
        count=1,
        total_mib=8192,
        used_mib=176,
        driver="460.15",
        cuda="11.1",
        processes=((1752, None), (2424, None)),
        partial=True,
    ),
    # ---- B. topo -m
    "8xH100-SXM_topo_NV18_10NIC_partial.txt": Expect(
        topo_gpus=8,
        all_links="NV18",
        interconnect="nvlink",
        nics=10,
        partial=True,
        cpu_affinity=("0-55,112-167",) * 4 + ("56-111,168-223",) * 4,
    ),
    "8xA100-p4d_topo_NV12_noNIC.txt": Expect(topo_gpus=8, all_links=NV12_ALL, interconnect="nvlink", nics=0),
    "8xA100_topo_NV12_4NIC_NIClegend.txt": Expect(
        topo_gpus=8, all_links=NV12_ALL, interconnect="nvlink", nics=4
    ),
    "8xA100-40GB-DGX_topo_NV12_12NIC_spaces_partial.txt": Expect(
        topo_gpus=8,
        nics=12,
        all_links=NV12_ALL,
        links={(0, 7): "NV12", (3, 4): "NV12"},
        partial=True,
    ),
    "4xV100-SXM2-POWER9_topo_NV3_mlx5.txt": Expect(
        topo_gpus=4,
        nics=4,
        links={(0, 1): "NV3", (2, 3): "NV3", (0, 2): "SYS", (1, 3): "SYS"},
        nvlink_pairs=((0, 1), (2, 3)),
        interconnect="pcie",
        numa=("0", "0", "8", "8"),
    ),
    "8xRTXA6000_topo_NV4pairs_indented-spaces.txt": Expect(
        topo_gpus=8,
        nvlink_pairs=((0, 1), (2, 3), (4, 5), (6, 7)),
        links={(0, 2): "NODE", (0, 4): "SYS"},
        interconnect="pcie",
        cpu_affinity=("0-63,128-191",) * 4 + ("64-127,192-254",) * 4,
    ),
    "2xRTX3090_topo_NV4-bridge_560.txt": Expect(topo_gpus=2, links={(0, 1): "NV4"}, interconnect="nvlink"),
    "2xRTX5090_topo_PHB_610.txt": Expect(topo_gpus=2, links={(0, 1): "PHB"}, interconnect="pcie"),
    "2xRTX3090_topo_SYS_NUMA-NA-extra-cols_595.txt": Expect(
        topo_gpus=2,
        links={(0, 1): "SYS"},
        interconnect="pcie",
        numa=(None, "1"),
    ),
    "2xA100-PCIe_topo_SYS_mlx5.txt": Expect(topo_gpus=2, links={(0, 1): "SYS"}, interconnect="pcie", nics=2),
    "8xRTX4090_topo_allSYS_NIC.txt": Expect(
        topo_gpus=8,
        all_links="SYS",
        interconnect="pcie",
        nics=2,
        numa=("0",) * 4 + ("1",) * 4,
    ),
    "collectenv-topology_2xGPU_NV12_8NIC_emptyAffinity_spaces.txt": Expect(
        topo_gpus=2,
        links={(0, 1): "NV12"},
        interconnect="nvlink",
        nics=8,
        cpu_affinity=(None, None),
        numa=(None, None),
    ),
    "2xRTX5090_topo-p2p-rw_610_NOT-topo-m.txt": Expect(interconnect=None),  # and no topology: see below
    # ---- C. collect_env
    "collectenv_4xA10_470.txt": Expect(count=4, names="NVIDIA A10", driver="470.129.06"),
    "collectenv_8xA100-SXM4-40GB_550.txt": Expect(count=8, names="NVIDIA A100-SXM4-40GB", driver="550.54.14"),
    "collectenv_4xA100-SXM4-80GB_535.txt": Expect(
        count=4, names="NVIDIA A100-SXM4-80GB", driver="535.104.05"
    ),
    "collectenv_1xRTX4090_535_singleline.txt": Expect(
        count=1, names="NVIDIA GeForce RTX 4090", driver="535.183.01"
    ),
    "collectenv_1xRTX3090_550_singleline.txt": Expect(
        count=1, names="NVIDIA GeForce RTX 3090", driver="550.54.15"
    ),
    "collectenv_WSL2_1xRTX4070-Laptop_551_singleline.txt": Expect(
        count=1,
        names="NVIDIA GeForce RTX 4070 Laptop GPU",
        driver="551.88",
    ),
    "collectenv-newfmt_2xH100-NVL_575_aligned-colons.txt": Expect(
        count=2,
        names="NVIDIA H100 NVL",
        driver="575.51.03",
    ),
    # ---- D. CSV, -L, query errors
    "csv_2xTITANV+RTX5880Ada_570_compute_cap_header.txt": Expect(
        count=2,
        names=("NVIDIA TITAN V", "NVIDIA RTX 5880 Ada Generation"),
        cc=("7.0", "8.9"),
        driver="570.86.15",
    ),
    "L_2xTITANV+RTX5880Ada_570.txt": Expect(
        count=2,
        names=("NVIDIA TITAN V", "NVIDIA RTX 5880 Ada Generation"),
        uuids=("GPU-b5169cef-2205-c30e-f2b3-220cfa14bafd", "GPU-7518f6b0-991f-ce2b-3d37-c779130d3137"),
    ),
    "csv_1xGB10_580_memory-NA_noheader-nounits.txt": Expect(
        count=1,
        names="NVIDIA GB10",
        total_mib=(None,),
        used_mib=(None,),
    ),
    # 19-field query: INDEX.md's 7979 MiB and driver 440.64 need the field list (test below passes it).
    "csv_1xRTX2080_440_noheader-nounits_NA.txt": Expect(
        count=1,
        names="GeForce RTX 2080",
        uuids=("GPU-22b2c6ac-2d49-4863-197c-9c469071178a",),
    ),
    "csv_error_invalid-field_cuda_version.txt": Expect(
        error='Field "cuda_version" is not a valid field to query.'
    ),
    # ---- E. failures
    "fail_NVIDIA-SMI-has-failed_couldnt-communicate_linux-aws.txt": Expect(
        error=HAS_FAILED,
    ),
    "fail_NVIDIA-SMI-has-failed_couldnt-communicate_WSL1_trailing-space.txt": Expect(
        error=HAS_FAILED,
    ),
    "fail_NVML-driver-library-mismatch.txt": Expect(
        error="Failed to initialize NVML: Driver/library version mismatch"
    ),
    "fail_NVML-Unknown-Error_container.txt": Expect(error="Failed to initialize NVML: Unknown Error"),
    "fail_No-devices-were-found_RTX5090.txt": Expect(error="No devices were found"),
    "fail_No-devices-were-found_trailing-spaces.txt": Expect(error="No devices were found"),
    "fail_Unable-to-determine-device-handle_space_GPU-0000_2015.txt": Expect(
        error="Unable to determine the device handle for GPU 0000:0B:00.0: Unknown Error",
    ),
    # ---- 1xH100-80GB-HBM3_580/: not in INDEX.md's tables; values read off the files themselves.
    "1xH100-80GB-HBM3_580/smi_default.txt": Expect(
        count=1,
        names="NVIDIA H100 80GB HBM3",
        total_mib=81559,
        used_mib=0,
        driver="580.159.04",
        cuda="13.0",
        mig="Disabled",
        processes=(),
        topo_gpus=1,
        interconnect=None,
        cpu_affinity=("0-15",),
        uuids=("GPU-4b412181-3135-16a6-644f-461039830871",),
    ),
    "1xH100-80GB-HBM3_580/smi_q.xml": Expect(
        count=1,
        names="NVIDIA H100 80GB HBM3",
        total_mib=81559,
        used_mib=0,
        driver="580.159.04",
        cuda="13.0",
        mig="Disabled",
        processes=(),
        uuids=("GPU-4b412181-3135-16a6-644f-461039830871",),
    ),
    "1xH100-80GB-HBM3_580/smi_query.csv": Expect(
        count=1,
        names="NVIDIA H100 80GB HBM3",
        total_mib=81559,
        used_mib=0,
        driver="580.159.04",
        cc=("9.0",),
        uuids=("GPU-4b412181-3135-16a6-644f-461039830871",),
    ),
    "1xH100-80GB-HBM3_580/smi_query_nounits.csv": Expect(
        count=1,
        names="NVIDIA H100 80GB HBM3",
        driver="580.159.04",
    ),
}


def _fixture_files() -> list[str]:
    return sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p.name != "INDEX.md")


def _per_gpu(value: object, n: int) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else (value,) * n


def _mib(value: int | None) -> int | None:
    return None if value is None else value * MIB


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == _fixture_files()


def test_fixture_copies_keep_the_index() -> None:
    assert "A correct parser reports" in (DATA / "INDEX.md").read_text(encoding="utf-8")


def _check_gpus(probe: SmiProbe, exp: Expect) -> None:
    gpus = probe.gpus
    if exp.count is not ...:
        assert len(gpus) == exp.count
    if exp.at_least is not ...:
        assert len(gpus) >= exp.at_least
    n = len(gpus)
    if exp.names is not ...:
        assert tuple(g.name for g in gpus) == _per_gpu(exp.names, n)
    if exp.total_mib is not ...:
        expected = tuple(_mib(v) for v in _per_gpu(exp.total_mib, n))  # type: ignore[arg-type]
        assert tuple(g.memory_total_bytes for g in gpus) == expected
    if exp.used_mib is not ...:
        expected = tuple(_mib(v) for v in _per_gpu(exp.used_mib, n))  # type: ignore[arg-type]
        assert tuple(g.memory_used_bytes for g in gpus) == expected
    if exp.mig is not ...:
        assert [g.mig_mode for g in gpus] == [exp.mig] * n
    if exp.cc is not ...:
        assert tuple(g.compute_capability for g in gpus) == exp.cc
    if exp.uuids is not ...:
        assert tuple(g.uuid for g in gpus) == exp.uuids
    if exp.unhealthy is not ...:
        assert tuple(g.index for g in gpus if not g.healthy) == exp.unhealthy


def _check_topology(probe: SmiProbe, exp: Expect) -> None:
    topo = probe.topology
    if exp.topo_gpus is not ...:
        assert topo is not None and len(topo.gpu_labels) == exp.topo_gpus
    if topo is None:
        return
    if exp.nics is not ...:
        assert len(topo.nic_labels) == exp.nics
    for (a, b), link in exp.links.items():
        assert topo.link(a, b) == link
    if exp.all_links is not ...:
        shown = [cell for (a, b), cell in topo.links.items() if a != b]
        assert shown and set(shown) == {exp.all_links}
    if exp.nvlink_pairs is not ...:
        assert topo.nvlink_pairs() == exp.nvlink_pairs
    if exp.cpu_affinity is not ...:
        assert topo.cpu_affinity == exp.cpu_affinity
    if exp.numa is not ...:
        assert topo.numa_affinity == exp.numa


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=sorted(EXPECTED))
def test_fixture(name: str) -> None:
    exp = EXPECTED[name]
    text = (DATA / name).read_text(encoding="utf-8")
    if exp.error is not ...:
        with pytest.raises(SmiError) as info:
            parse_probe_text(text, source="saved.txt")
        assert str(info.value) == f'saved.txt: nvidia-smi failed: "{exp.error}"'
        assert "\n" not in str(info.value)
        return
    probe = parse_probe_text(text, source=name)
    _check_gpus(probe, exp)
    if exp.driver is not ...:
        assert probe.driver_version == exp.driver
    if exp.cuda is not ...:
        assert probe.cuda_version == exp.cuda
    if exp.processes is not ...:
        assert tuple((p.pid, p.used_bytes and p.used_bytes // MIB) for p in probe.processes) == exp.processes
    if exp.min_processes is not ...:
        assert len(probe.processes) >= exp.min_processes
    if exp.mig_devices_mib is not ...:
        got = tuple((m.memory_total_bytes or 0) // MIB for m in probe.mig_devices)
        assert got == exp.mig_devices_mib
    _check_topology(probe, exp)
    if exp.interconnect is not ...:
        assert probe.interconnect == exp.interconnect
    if exp.partial is not ...:
        assert probe.partial is exp.partial


# ---------------------------------------------------------------------------------- details per format


def _parse(name: str, **kwargs: object) -> SmiProbe:
    return parse_probe_text((DATA / name).read_text(encoding="utf-8"), source=name, **kwargs)  # type: ignore[arg-type]


def test_p2p_grid_is_not_a_topology() -> None:
    probe = _parse("2xRTX5090_topo-p2p-rw_610_NOT-topo-m.txt")
    assert probe.topology is None
    assert probe.formats == ("topo_p2p",)
    assert probe.p2p[(0, 1)] == "GNS"
    assert any("topo -p2p" in w for w in probe.warnings)


def test_rtx2080_csv_with_its_field_list() -> None:
    # The 19 fields Ricks-Lab/gpu-utils queried (GPUmodule.py, nv_query_items, June 2020).
    fields = (
        "power.limit",
        "power.min_limit",
        "power.max_limit",
        "memory.total",
        "vbios_version",
        "driver_version",
        "name",
        "gpu_uuid",
        "power.draw",
        "temperature.gpu",
        "temperature.memory",
        "clocks.current.graphics",
        "clocks.sm",
        "clocks.mem",
        "utilization.gpu",
        "utilization.memory",
        "fan.speed",
        "pcie.link.width.current",
        "pstate",
    )
    probe = _parse("csv_1xRTX2080_440_noheader-nounits_NA.txt", csv_fields=fields)
    (gpu,) = probe.gpus
    assert gpu.name == "GeForce RTX 2080"
    assert gpu.memory_total_bytes == 7979 * MIB
    assert probe.driver_version == "440.64"
    assert gpu.temperature_c == 45


def test_mig_table_and_listing_merge() -> None:
    probe = merge_probes(_parse("1xA30_smi_535_MIG-enabled_3instances.txt"), _parse("1xA30_L_535_MIG.txt"))
    assert len(probe.gpus) == 1
    assert [(m.name, m.gi_id, (m.memory_total_bytes or 0) // MIB) for m in probe.mig_devices] == [
        ("2g.12gb", 2, 11968),
        ("1g.6gb", 3, 5952),
        ("1g.6gb", 4, 5952),
    ]
    assert probe.gpus[0].uuid == "GPU-1e44b340-5807-0dbe-62e6-343a6b8b8bcd"


def test_wsl_wddm_row_and_processes() -> None:
    probe = _parse("WSL_1xRTX2070_smi_460_WDDM_procs.txt")
    gpu = probe.gpus[0]
    assert (gpu.name, gpu.name_truncated, gpu.driver_model, gpu.persistence_mode) == (
        "GeForce RTX 207...",
        True,
        "WDDM",
        None,
    )
    assert [p.process_name for p in probe.processes] == [
        "Insufficient Permissions",
        "...b3d8bbwe\\WinStore.App.exe",
    ]
    assert {p.type for p in probe.processes} == {"C+G"}


def test_version_mismatch_and_cuda_err_are_warnings() -> None:
    probe = _parse("WSL_1xRTX3060-Laptop_smi_545-546_cudaERR.txt")
    assert probe.smi_version == "545.46"
    assert any("ERR!" in w for w in probe.warnings)
    assert any("545.46" in w and "546.80" in w for w in probe.warnings)


def test_err_gpus_are_flagged_not_dropped() -> None:
    probe = _parse("4xA100-80GB-PCIe_smi_595_two-GPUs-ERR.txt")
    assert [g.errors for g in probe.gpus][2:] == [("fan", "mig_mode"), ("fan", "mig_mode")]
    colab = _parse("1xV100-SXM2-16GB_smi_450-vs-418_Colab_MIG-ERR.txt").gpus[0]
    assert colab.healthy and colab.errors == ("mig_mode",)


def test_partial_rows_are_kept_but_incomplete() -> None:
    k80 = _parse("NxK80_smi_418_noMIGrow_partial.txt")
    assert [g.complete for g in k80.gpus] == [True, True, True, False]
    assert k80.gpus[3].bus_id == "00000000:00:1A.0"


def test_ansi_underlined_topo_header() -> None:
    text = "\t\x1b[4mGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n"
    text += "GPU0\t X \tNV18\t0-15\t0\t\tN/A\n"
    text += "GPU1\tNV18\t X \t0-15\t0\t\tN/A\n"
    assert parse_probe_text(text).interconnect == "nvlink"


def test_topo_column_overflow_cell() -> None:
    text = "\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\nGPU0\t X \tPH0-115\t0\nGPU1\tPHB\t X \t0-115\t0\n"
    topo = parse_probe_text(text).topology
    assert topo is not None and topo.link(0, 1) == "PHB" and topo.cpu_affinity[0] == "0-115"


def test_headerless_row_in_the_probe_layout() -> None:
    row = "0, NVIDIA H100 80GB HBM3, 81559, 3, 9.0, GPU-4b412181-3135-16a6-644f-461039830871, "
    row += "00000000:00:06.0, 580.159.04, Disabled\n"
    (gpu,) = parse_probe_text(row).gpus
    assert (gpu.memory_total_bytes, gpu.memory_used_bytes, gpu.compute_capability, gpu.mig_mode) == (
        81559 * MIB,
        3 * MIB,
        "9.0",
        "Disabled",
    )
    assert len(PROBE_QUERY_FIELDS) == 9


def test_csv_query_compute_apps() -> None:
    text = "pid, process_name, used_gpu_memory [MiB]\n2921, VLLM::Worker_TP0, 22934 MiB\n"
    (proc,) = parse_probe_text(text + "index, name\n0, NVIDIA A10\n").processes
    assert (proc.pid, proc.process_name, proc.used_bytes) == (2921, "VLLM::Worker_TP0", 22934 * MIB)


def test_truncated_xml_is_partial() -> None:
    text = (DATA / "1xH100-80GB-HBM3_580" / "smi_q.xml").read_text(encoding="utf-8")
    two = text.replace("</nvidia_smi_log>", "")
    probe = parse_probe_text(two[: two.rindex("</gpu>") + len("</gpu>")] + "\n<gpu id='x'><product_na")
    assert probe.partial and len(probe.gpus) == 1


def test_xml_entities_are_not_expanded() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><nvidia_smi_log>&a;</nvidia_smi_log>'
    with pytest.raises(SmiError, match="no GPUs recognised"):
        parse_probe_text(bomb)


@pytest.mark.parametrize(
    "text",
    ["", "   \n\n", "hello world\n", "\x00\x01\x02binary", "GPU0\n", "a, b, c\n1, 2, 3\n"],
    ids=["empty", "blank", "prose", "binary", "lone-label", "foreign-csv"],
)
def test_nothing_recognisable(text: str) -> None:
    with pytest.raises(SmiError, match=r"no GPUs recognised in capture\.txt") as info:
        parse_probe_text(text, source="capture.txt")
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


# --------------------------------------------------------------------------------- merge, interconnect


def test_merge_table_listing_and_topology() -> None:
    table = _parse("NxA100-SXM-80GB_smi_495_MIGenabled_partial.txt")
    listing = parse_probe_text(
        "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-a)\nGPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-b)\n"
    )
    topo = parse_probe_text("\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV12\t0-7\nGPU1\tNV12\t X \t0-7\n")
    probe = merge_probes(table, listing, topo)
    assert [g.name for g in probe.gpus] == ["NVIDIA A100-SXM4-80GB"] * 2  # full names replace cut ones
    assert [g.memory_total_bytes for g in probe.gpus] == [81251 * MIB] * 2
    assert [g.uuid for g in probe.gpus] == ["GPU-a", "GPU-b"]
    assert probe.driver_version == "495.29.05" and probe.cuda_version == "11.5"
    assert probe.interconnect == "nvlink"
    assert probe.formats == ("table", "list", "topo")


def test_merge_reports_conflicts_and_count_mismatch() -> None:
    a = SmiProbe(gpus=(SmiGpu(index=0, name="X", uuid="GPU-1"),), driver_version="550.1")
    b = SmiProbe(gpus=(SmiGpu(index=0, name="X", uuid="GPU-2"),), driver_version="560.2")
    topo = SmiProbe(topology=Topology(gpu_labels=("GPU0", "GPU1"), links={(0, 1): "SYS"}))
    merged = merge_probes(a, b, topo)
    assert merged.driver_version == "550.1"
    assert any("driver version" in w for w in merged.warnings)
    assert any("UUID" in w for w in merged.warnings)
    assert any("topology shows 2 GPUs" in w for w in merged.warnings)
    assert merge_probes() == SmiProbe()


def test_interconnect_property() -> None:
    def topo(links: dict[tuple[int, int], str], n: int = 3) -> SmiProbe:
        return SmiProbe(topology=Topology(gpu_labels=tuple(f"GPU{i}" for i in range(n)), links=links))

    assert SmiProbe().interconnect is None
    assert topo({(0, 1): "NV4", (0, 2): "NV4", (1, 2): "NV4"}).interconnect == "nvlink"
    assert topo({(0, 1): "NV4", (0, 2): "SYS", (1, 2): "NV4"}).interconnect == "pcie"
    assert topo({(2, 1): "PIX", (0, 1): "NV1", (0, 2): "NV1"}).interconnect == "pcie"  # either direction
    assert topo({(0, 0): "X"}, n=1).interconnect is None  # one GPU: no pair to join


# ------------------------------------------------------------------------- fuzz: only SmiError escapes

_FIXTURE_TEXTS = [(DATA / n).read_text(encoding="utf-8") for n in sorted(EXPECTED)]


def _parse_or_smierror(text: str) -> None:
    try:
        probe = parse_probe_text(text, source="fuzz")
    except SmiError as exc:
        assert str(exc) and "\n" not in str(exc).split(": nvidia-smi failed")[0]
        return
    assert isinstance(probe, SmiProbe)
    assert probe.gpus or probe.topology or probe.p2p or probe.mig_devices


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(
        alphabet=st.sampled_from(list("|+-=: \t\n.,/0123456789GPUNVXSYMiBAOnfC%W[]()<>")) | st.characters()
    )
)
def test_fuzz_arbitrary_text(text: str) -> None:
    _parse_or_smierror(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_FIXTURE_TEXTS),
    st.integers(min_value=0, max_value=6000),
    st.integers(min_value=0, max_value=6000),
    st.text(max_size=20),
)
def test_fuzz_mangled_fixtures(text: str, cut: int, at: int, junk: str) -> None:
    _parse_or_smierror(text[:at] + junk + text[at:cut] if at < cut else text[:cut] + junk)
