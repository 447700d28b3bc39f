"""gpu_catalog `host_link`: the GPU <-> host memory link CPU weight offload streams over (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from planner.errors import GpuError
from planner.hardware.catalog import GpuSpec, load_catalog

REPO = Path(__file__).resolve().parents[3]
CATALOG_DIR = REPO / "gpu_catalog"


@pytest.fixture(scope="module")
def catalog() -> dict[str, GpuSpec]:
    return load_catalog(CATALOG_DIR)


def test_every_shipped_gpu_has_a_sourced_host_link(catalog: dict[str, GpuSpec]) -> None:
    for spec in catalog.values():
        assert spec.host_link is not None, spec.id
        assert any("host_link" in s.fields and s.url for s in spec.sources), f"{spec.id}: no source for host_link"


def test_superchips_use_nvlink_c2c_and_the_rest_pcie(catalog: dict[str, GpuSpec]) -> None:
    c2c = {gid for gid, s in catalog.items() if s.host_link is not None and s.host_link.type == "nvlink-c2c"}
    assert c2c == {"gh200-96gb", "gh200-144gb", "gb200", "gb10"}


def test_host_link_datasheet_spot_checks(catalog: dict[str, GpuSpec]) -> None:
    # H100 datasheet: "PCIe Gen5: 128 GB/s" (x16, both directions) -> 64 GB/s host to device
    h100 = catalog["h100-sxm-80gb"].host_link
    assert (h100.type, h100.pcie_gen, h100.lanes) == ("pcie", 5, 16)
    assert h100.bandwidth_bytes_per_s == pytest.approx(64e9)
    # A100 datasheet: "PCIe Gen4: 64 GB/s" -> 32 GB/s per direction
    assert catalog["a100-sxm-80gb"].host_link.bandwidth_bytes_per_s == pytest.approx(32e9)
    # T4 datasheet: PCIe Gen3 x16, 32 GB/s -> 16 GB/s per direction
    t4 = catalog["t4-16gb"].host_link
    assert (t4.pcie_gen, t4.lanes, t4.bandwidth_bytes_per_s) == (3, 16, pytest.approx(16e9))
    # GeForce RTX 3050 8 GB: PCIe 4.0 x8 -> 8 lanes x 2 GB/s
    assert catalog["rtx-3050"].host_link.lanes == 8
    assert catalog["rtx-3050"].host_link.bandwidth_bytes_per_s == pytest.approx(16e9)
    # GH200 datasheet: NVLink-C2C 900 GB/s CPU<->GPU -> 450 GB/s per direction
    gh = catalog["gh200-96gb"].host_link
    assert (gh.type, gh.pcie_gen, gh.lanes) == ("nvlink-c2c", None, None)
    assert gh.bandwidth_bytes_per_s == pytest.approx(450e9)
    # AMD MI300X data sheet: PCIe Gen 5 x16, 128 GB/s
    assert catalog["mi300x"].host_link.bandwidth_bytes_per_s == pytest.approx(64e9)


def test_pcie_host_link_agrees_with_interconnect_generation(catalog: dict[str, GpuSpec]) -> None:
    for spec in catalog.values():
        link = spec.host_link
        if link is not None and link.type == "pcie" and spec.interconnect.pcie_gen is not None:
            assert link.pcie_gen == spec.interconnect.pcie_gen, spec.id


def _write(tmp_path: Path, **host_link: object) -> Path:
    raw = yaml.safe_load((CATALOG_DIR / "h100-pcie-80gb.yaml").read_text())
    raw["host_link"] = host_link
    (tmp_path / "h100-pcie-80gb.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


@pytest.mark.parametrize(("link", "message"), [
    ({"type": "pcie", "pcie_gen": 5, "bandwidth_bytes_per_s": 64e9}, "needs pcie_gen and lanes"),
    ({"type": "pcie", "pcie_gen": 5, "lanes": 12, "bandwidth_bytes_per_s": 48e9}, "lanes must be"),
    ({"type": "pcie", "pcie_gen": 5, "lanes": 16, "bandwidth_bytes_per_s": 128e9}, "does not match PCIe Gen5 x16"),
    ({"type": "pcie", "pcie_gen": 4, "lanes": 16, "bandwidth_bytes_per_s": 32e9}, "differs from interconnect"),
    ({"type": "nvlink-c2c", "lanes": 16, "bandwidth_bytes_per_s": 450e9}, "takes no pcie_gen or lanes"),
    ({"type": "pcie", "pcie_gen": 5, "lanes": 16, "bandwidth_bytes_per_s": 0}, "greater than 0"),
    ({"type": "usb", "bandwidth_bytes_per_s": 1e9}, "host_link.type"),
])
def test_bad_host_link_is_refused_naming_the_file(tmp_path: Path, link: dict, message: str) -> None:
    with pytest.raises(GpuError, match=r"h100-pcie-80gb\.yaml") as exc:
        load_catalog(_write(tmp_path, **link))
    assert message in str(exc.value)


def test_host_link_is_optional_for_site_catalogs(tmp_path: Path) -> None:
    raw = yaml.safe_load((CATALOG_DIR / "h100-pcie-80gb.yaml").read_text())
    del raw["host_link"]
    raw["sources"] = [s for s in raw["sources"] if s["fields"] != ["host_link"]]
    (tmp_path / "h100-pcie-80gb.yaml").write_text(yaml.safe_dump(raw))
    assert load_catalog(tmp_path)["h100-pcie-80gb"].host_link is None
