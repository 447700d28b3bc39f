"""The shipped GPU catalog (gpu_catalog/*.yaml): loads, resolves names, and matches datasheets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from planner.errors import GpuError
from planner.hardware.catalog import GpuSpec, load_catalog, match_smi_name, resolve_gpu

REPO = Path(__file__).resolve().parents[3]
CATALOG_DIR = REPO / "gpu_catalog"

# Full GPU names that appear in shared/fixtures/nvidia-smi/ (INDEX.md tables and the capture files:
# default tables, `-L`, collect_env and `--query-gpu` CSV). Names that nvidia-smi cut off in the table
# ("NVIDIA A100-SXM...", "Tesla V100-SXM2...", "Tesla P100-PCIE...", "NVIDIA GeForce RTX 3060 ...",
# "GeForce RTX 207...") are left out: they cannot be matched by name; the probe has to use -L / memory.
# "Quadro K3100M" (2016 Kepler laptop GPU, CC 3.0) is deliberately not in the catalog.
FIXTURE_NAMES = [
    "NVIDIA H100 80GB HBM3",
    "NVIDIA H100 NVL",
    "NVIDIA H100 PCIe",
    "NVIDIA H200",
    "NVIDIA GH200 480GB",
    "NVIDIA H20",
    "NVIDIA A100-SXM4-40GB",
    "A100-SXM4-40GB",  # driver 450 spelling, no "NVIDIA " prefix
    "NVIDIA A100-SXM4-80GB",
    "NVIDIA A100 80GB PCIe",
    "NVIDIA A30",
    "NVIDIA A10",
    "NVIDIA A10G",
    "NVIDIA A40",
    "NVIDIA L40S",
    "Tesla V100-SXM2-16GB",
    "Tesla T4",
    "Tesla K80",
    "NVIDIA GeForce RTX 4090",
    "NVIDIA GeForce RTX 3090",
    "NVIDIA GeForce RTX 5090",
    "NVIDIA GeForce RTX 5070",
    "NVIDIA GeForce RTX 4070",
    "NVIDIA GeForce RTX 4070 Laptop GPU",
    "NVIDIA GeForce RTX 3050",
    "NVIDIA GeForce GTX 1050 Ti",
    "GeForce RTX 2080",
    "TITAN Xp",
    "NVIDIA TITAN V",
    "Quadro RTX 4000",
    "NVIDIA RTX 5880 Ada Generation",
    "NVIDIA GB10",
]


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


@pytest.fixture(scope="module")
def catalog() -> dict[str, GpuSpec]:
    return load_catalog(CATALOG_DIR)


def test_catalog_loads_with_enough_entries(catalog: dict[str, GpuSpec]) -> None:
    assert len(catalog) >= 30
    assert all(isinstance(s, GpuSpec) for s in catalog.values())


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_names_match(catalog: dict[str, GpuSpec], name: str) -> None:
    spec = match_smi_name(name, catalog)
    assert spec is not None, f"{name!r} from the nvidia-smi fixtures is not in the catalog"


def test_fixture_name_mapping_spot_checks(catalog: dict[str, GpuSpec]) -> None:
    assert match_smi_name("A100-SXM4-40GB", catalog).id == "a100-sxm-40gb"
    assert match_smi_name("NVIDIA GH200 480GB", catalog).id == "gh200-96gb"
    assert match_smi_name("NVIDIA H100 PCIe", catalog).id == "h100-pcie-80gb"
    assert match_smi_name("Tesla T4", catalog).id == "t4-16gb"


@pytest.mark.parametrize("query", ["H100", "h100", "NVIDIA H100 80GB HBM3", "h100-sxm-80gb", "H100 SXM"])
def test_resolve_h100(catalog: dict[str, GpuSpec], query: str) -> None:
    assert resolve_gpu(query, catalog).id == "h100-sxm-80gb"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("A100", "a100-sxm-80gb"),  # documented choice: 'A100' means the 80GB SXM4 part
        ("H100-PCIe", "h100-pcie-80gb"),
        ("H200", "h200-sxm-141gb"),
        ("L4", "l4-24gb"),
        ("L40", "l40-48gb"),
        ("L40S", "l40s-48gb"),
        ("A10", "a10-24gb"),
        ("A10G", "a10g-24gb"),
        ("4090", "rtx-4090"),
        ("RTX4090", "rtx-4090"),
        ("V100", "v100-sxm2-16gb"),
        ("MI300X", "mi300x"),
        ("B200", "b200-180gb"),
    ],
)
def test_resolve_aliases(catalog: dict[str, GpuSpec], query: str, expected: str) -> None:
    assert resolve_gpu(query, catalog).id == expected


def test_unknown_gpu_raises_with_hint(catalog: dict[str, GpuSpec]) -> None:
    with pytest.raises(GpuError) as exc:
        resolve_gpu("Voodoo5 6000", catalog)
    msg = str(exc.value)
    assert "vllm-planner gpus" in msg or "candidates" in msg


def test_ambiguous_gpu_lists_candidates(catalog: dict[str, GpuSpec]) -> None:
    # 'a100' alone is an alias; 'a100 pcie' is only a substring of two entries.
    with pytest.raises(GpuError, match="candidates"):
        resolve_gpu("A100 PCI", catalog)


def test_aliases_unique_after_normalisation(catalog: dict[str, GpuSpec]) -> None:
    owner: dict[str, str] = {}
    for spec in catalog.values():
        keys = {_norm(spec.id), *(_norm(n) for n in spec.names), *(_norm(a) for a in spec.aliases)}
        for key in keys:
            assert key, f"{spec.id}: empty key after normalisation"
            assert key not in owner, f"{key!r} used by both {owner[key]} and {spec.id}"
            owner[key] = spec.id


def test_every_entry_has_sources_for_its_numbers(catalog: dict[str, GpuSpec]) -> None:
    for spec in catalog.values():
        covered = {f for src in spec.sources for f in src.fields}
        for field in ("memory_bytes", "hbm_bandwidth_bytes_per_s", "peak_tflops", "interconnect"):
            assert field in covered, f"{spec.id}: no source for {field}"
        if spec.memory_bytes_measured:
            assert any("memory_bytes" in s.fields and s.url for s in spec.sources), spec.id


def test_memory_below_nvidia_smi_total(catalog: dict[str, GpuSpec]) -> None:
    for spec in catalog.values():
        if spec.nvidia_smi_total_mib is not None:
            assert spec.memory_bytes < spec.nvidia_smi_total_mib * 2**20, spec.id


def test_measured_memory_anchors(catalog: dict[str, GpuSpec]) -> None:
    # shared/spec/vllm-accounting.md: torch.cuda.mem_get_info() totals measured on lent GPUs.
    assert catalog["h100-sxm-80gb"].memory_bytes == 85_017_493_504
    assert catalog["h100-sxm-80gb"].memory_bytes_measured
    assert catalog["h200-sxm-141gb"].memory_bytes == 150_109_880_320
    assert catalog["h200-sxm-141gb"].memory_bytes_measured
    # vllm#10517 (calibration file): RTX 3090 total_gpu_memory=23.58GiB
    assert round(catalog["rtx-3090"].memory_bytes / 2**30, 2) == 23.58


def test_fp_support_flags(catalog: dict[str, GpuSpec]) -> None:
    for spec in catalog.values():
        # A peak figure for a dtype implies hardware support (some entries omit unconfirmed figures).
        assert "fp8" not in spec.peak_tflops or spec.fp8_supported, spec.id
        assert "fp4" not in spec.peak_tflops or spec.fp4_supported, spec.id
        if spec.fp4_supported:
            assert spec.fp8_supported, spec.id
        assert all(v > 0 for v in spec.peak_tflops.values()), spec.id


def test_datasheet_spot_checks(catalog: dict[str, GpuSpec]) -> None:
    h100 = catalog["h100-sxm-80gb"]
    # NVIDIA H100 Tensor Core GPU datasheet (SXM): 3.35 TB/s; BF16 1,979 TFLOPS with sparsity -> 989.5 dense
    assert h100.hbm_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.peak_tflops["bf16"] == pytest.approx(989, abs=1)
    assert h100.peak_tflops["fp8"] == pytest.approx(1979, abs=1)
    assert h100.interconnect.type == "nvlink"
    assert h100.interconnect.bandwidth_bytes_per_s == pytest.approx(900e9)
    assert h100.compute_capability == "9.0"
    assert h100.tdp_watts == 700
    # NVIDIA H200 product page: 4.8 TB/s HBM3e
    assert catalog["h200-sxm-141gb"].hbm_bandwidth_bytes_per_s == pytest.approx(4.8e12)
    # NVIDIA A100 datasheet: 80GB SXM 2,039 GB/s, BF16 312 TFLOPS dense, NVLink 600 GB/s
    a100 = catalog["a100-sxm-80gb"]
    assert a100.hbm_bandwidth_bytes_per_s == pytest.approx(2.039e12)
    assert a100.peak_tflops["bf16"] == pytest.approx(312)
    assert a100.interconnect.bandwidth_bytes_per_s == pytest.approx(600e9)
    assert not a100.fp8_supported
    # NVIDIA L40S datasheet: 864 GB/s, FP8 1,466 TFLOPS with sparsity -> 733 dense
    assert catalog["l40s-48gb"].hbm_bandwidth_bytes_per_s == pytest.approx(864e9)
    assert catalog["l40s-48gb"].peak_tflops["fp8"] == pytest.approx(733)
    # NVIDIA L4 datasheet: 300 GB/s, 72 W
    assert catalog["l4-24gb"].hbm_bandwidth_bytes_per_s == pytest.approx(300e9)
    assert catalog["l4-24gb"].tdp_watts == 72
    # NVIDIA T4 datasheet: 65 TFLOPS mixed-precision FP16, 70 W, compute capability 7.5
    assert catalog["t4-16gb"].peak_tflops["fp16"] == pytest.approx(65)
    assert catalog["t4-16gb"].compute_capability == "7.5"
    # Ada whitepaper (RTX 4090): 1008 GB/s, FP16 tensor with FP32 accumulate 165.2 TFLOPS dense
    assert catalog["rtx-4090"].hbm_bandwidth_bytes_per_s == pytest.approx(1008e9)
    assert catalog["rtx-4090"].peak_tflops["fp16"] == pytest.approx(165.2)
    # AMD Instinct MI300X data sheet: 5.3 TB/s, FP16 1307.4 TFLOPS dense
    assert catalog["mi300x"].hbm_bandwidth_bytes_per_s == pytest.approx(5.3e12)
    assert catalog["mi300x"].peak_tflops["fp16"] == pytest.approx(1307.4)
    # AMD Instinct MI355X (product page / data sheet): 288 GB HBM3E at 8 TB/s; dense FP16/BF16 2.5 PF, FP8 5.0 PF,
    # MXFP6/MXFP4 10 PF (256 CUs x 8192 FP8 FLOP/clock x 2.4 GHz = 5033.2 TF), FP64 78.6, FP32 157.3; 7 Infinity Fabric
    # links x 153.6 GB/s; 1400 W; gfx950 (ROCm GFXIP 9.5)
    mi355x = catalog["mi355x"]
    assert mi355x.vendor == "amd" and mi355x.family == "cdna4" and mi355x.form_factor == "oam"
    assert mi355x.hbm_bandwidth_bytes_per_s == pytest.approx(8.0e12)
    assert mi355x.peak_tflops["bf16"] == pytest.approx(2516.6)
    assert mi355x.peak_tflops["fp16"] == pytest.approx(2516.6)
    assert mi355x.peak_tflops["fp8"] == pytest.approx(5033.2)
    assert mi355x.peak_tflops["fp6"] == pytest.approx(10066.3)
    assert mi355x.peak_tflops["fp4"] == pytest.approx(10066.3)
    assert mi355x.peak_tflops["fp64"] == pytest.approx(78.6)
    assert mi355x.peak_tflops["fp32"] == pytest.approx(157.3)
    assert mi355x.interconnect.type == "infinity-fabric"
    assert mi355x.interconnect.bandwidth_bytes_per_s == pytest.approx(7 * 153.6e9)
    assert mi355x.interconnect.pcie_gen == 5
    assert mi355x.tdp_watts == 1400
    assert mi355x.fp8_supported and mi355x.fp4_supported
    assert (mi355x.gfx_arch, mi355x.compute_capability) == ("gfx950", "9.5")
    assert round(mi355x.memory_bytes / 2**30, 2) == 287.98  # HIP: "total capacity of 287.98 GiB" (gfx950)
    # HGX B200 spec (per GPU): FP4 supported, NVLink 5 1.8 TB/s
    assert catalog["b200-180gb"].fp4_supported
    assert catalog["b200-180gb"].interconnect.bandwidth_bytes_per_s == pytest.approx(1.8e12)


def test_amd_entries_carry_rocm_capability_and_memory() -> None:
    """AMD entries: the gfx target and the (major, minor) ROCm reports for it (vllm/platforms/rocm.py
    _capability_from_gcn_arch: gfx90a -> (9, 0), gfx942 -> (9, 4), gfx950 -> (9, 5)); memory as ROCm reports it,
    nominal minus the 16 MiB the driver keeps (MI300X: rocm-smi 'VRAM Total Memory (B): 206141652992', rocminfo
    pool 201310208 KB)."""
    catalog = load_catalog(CATALOG_DIR)
    want = {"mi250x-gcd": ("gfx90a", "9.0", 64), "mi300x": ("gfx942", "9.4", 192), "mi325x": ("gfx942", "9.4", 256),
            "mi355x": ("gfx950", "9.5", 288)}
    for gid, (gfx, cc, gib) in want.items():
        spec = catalog[gid]
        assert (spec.gfx_arch, spec.compute_capability) == (gfx, cc), gid
        assert spec.memory_bytes == gib * 2**30 - 16 * 2**20, gid
    assert catalog["mi300x"].memory_bytes == 206_141_652_992 and catalog["mi300x"].memory_bytes_measured
    for spec in catalog.values():
        assert (spec.vendor == "amd") == (spec.gfx_arch is not None), spec.id
        if spec.vendor == "amd":
            assert spec.compute_capability is not None, spec.id


@pytest.mark.parametrize(("name", "expected"), [
    ("AMD Instinct MI300X", "mi300x"),
    ("AMD Instinct MI300X OAM", "mi300x"),  # rocm-smi -a / --showproductname "Card series"
    ("MI300X", "mi300x"),  # amd-smi static MARKET_NAME
    ("MI300X-O", "mi300x"),  # amd-smi static MARKET_NAME on other drivers
    ("AMD Instinct MI325X", "mi325x"),
    ("AMD Instinct MI355X", "mi355x"),  # rocminfo Marketing Name, amd-smi MARKET_NAME
    ("AMD Instinct MI250X/MI250", "mi250x-gcd"),  # rocminfo Marketing Name (gfx90a)
    ("AMD INSTINCT MI200 (MCM) OAM LC MBA HPE C2", "mi250x-gcd"),  # rocm-smi Card series, HPE MI250X (0x7408)
])
def test_rocm_smi_names_match(name: str, expected: str) -> None:
    spec = match_smi_name(name, load_catalog(CATALOG_DIR))
    assert spec is not None and spec.id == expected


@pytest.mark.parametrize(("query", "expected"), [("MI355X", "mi355x"), ("mi355", "mi355x"), ("MI325X", "mi325x")])
def test_resolve_amd_aliases(query: str, expected: str) -> None:
    assert resolve_gpu(query, load_catalog(CATALOG_DIR)).id == expected
