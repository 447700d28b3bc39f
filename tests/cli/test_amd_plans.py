"""AMD machines from probe to plan (issue 20): rocm-smi / amd-smi captures are read like nvidia-smi's, the
catalog is found by name or PCI device id, and compute partitions get their share of the card.

Expected values are typed from the captures (tests/data/amd-smi/INDEX.md) and AMD's documents, not from the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clirun import run

AMD = Path(__file__).resolve().parents[2] / "tests" / "data" / "amd-smi"
MI300X_BYTES = 206_141_652_992  # rocm-smi "VRAM Total Memory (B)" = HIP totalGlobalMem 196,592 MiB (INDEX.md §D)
LLAMA_8B = ("--model", "meta-llama/Llama-3.1-8B-Instruct")


def plan(capture: str, *extra: str) -> dict:
    rc, out, err = run("plan", *LLAMA_8B, "--from-file", str(AMD / capture), *extra, "--json")
    assert rc == 0, err
    return json.loads(out)


def test_rocm_smi_table_names_the_mi300x() -> None:
    """ROCm 6.0/6.1 concise table: '[0x74a1 : 0x00]' with 'AMD Instinct MI300X' on the line below."""
    hw = plan("rocm-smi_1xMI300X_model-rev-name-layout.txt")["hardware"]
    assert (hw["catalog_id"], hw["vendor"], hw["gpu_count"]) == ("mi300x", "amd", 1)
    assert hw["memory_bytes_per_gpu"] == MI300X_BYTES


def test_a_device_id_alone_finds_the_catalog_entry() -> None:
    """ROCm 6.2+ table of an MI300X VF: no name, DID 0x74b5, which vLLM's device map (vllm/platforms/rocm.py
    _ROCM_DEVICE_ID_NAME_MAP) and AMD's node labeller table call an MI300X VF."""
    rc, out, _ = run("detect", "--from-file", str(AMD / "rocm-smi_1xMI300X-VF-0x74b5_node-ids-layout_95pct.txt"),
                     "--json")
    (gpu,) = json.loads(out)["gpus"]
    assert rc == 0 and gpu["name"] == "" and gpu["pci_device_id"] == "0x74b5" and gpu["catalog_id"] == "mi300x"
    assert gpu["vendor"] == "amd" and gpu["compute_partition"] == "SPX" and gpu["gfx_version"] == "gfx942"
    hw = plan("rocm-smi_1xMI300X-VF-0x74b5_node-ids-layout_95pct.txt")["hardware"]
    assert hw["catalog_id"] == "mi300x" and hw["devices"][0]["name"] == "AMD Instinct MI300X"


def test_qpx_partitions_hold_a_quarter_of_the_card() -> None:
    """rocm-smi prints the whole card (206,141,652,992 B) on each of the 4 QPX partitions (a display issue AMD
    acknowledges, ROCm/amdsmi#97); a QPX partition is a HIP device with a quarter of the HBM."""
    hw = plan("rocm-smi+showmeminfo_4xMI300X-QPX_full-memory-each.txt")["hardware"]
    assert hw["gpu_count"] == 4
    assert [d["memory_total_bytes"] for d in hw["devices"]] == [MI300X_BYTES // 4] * 4
    assert hw["memory_bytes_per_gpu"] == 51_535_413_248


def test_dpx_partitions_hold_half_whatever_the_tool_prints() -> None:
    """amd-smi's DPX view prints 196592 MB on each card's first partition and 98296 MB (half) on the second."""
    hw = plan("amd-smi_16xMI300X-DPX-NPS1_default-view.txt")["hardware"]
    assert hw["gpu_count"] == 16
    assert {d["memory_total_bytes"] for d in hw["devices"]} == {98_296 * 2**20} == {MI300X_BYTES // 2}


def test_cpx_partitions_are_one_xcd_each() -> None:
    """63 CPX partitions of 8 MI300X (one missing): an MI300X has 8 XCDs (AMD SMI partitioning guide), so a CPX
    partition holds an eighth: 25,767,706,624 B, what KFD's size_in_bytes shows for it (INDEX.md §D)."""
    rc, out, err = run("plan", *LLAMA_8B, "--from-file",
                       str(AMD / "rocm-smi+showmeminfo_63xMI300X-CPX-NPS1_one-partition-missing.txt"), "--gpus", "1",
                       "--vllm-version", "0.33.0", "--json")
    devices = json.loads(out)["hardware"]["devices"]
    assert rc in (0, 3), err
    assert len(devices) == 63 and {d["memory_total_bytes"] for d in devices} == {25_767_706_624}


def test_an_err_state_amd_gpu_is_left_out(tmp_path: Path) -> None:
    """rocm-smi shows 'unknown' as the performance level of a GPU that does not answer (INDEX.md): not usable."""
    rc, out, err = run("detect", "--from-file", str(AMD / "rocm-smi_1xGPU-hung_perf-unknown_rocm4.txt"), "--json")
    (gpu,) = json.loads(out)["gpus"]
    assert rc == 0 and gpu["healthy"] is False and gpu["health_problems"]
    rc, _, err = run("plan", *LLAMA_8B, "--from-file", str(AMD / "rocm-smi_1xGPU-hung_perf-unknown_rocm4.txt"),
                     "--vram-gib", "16")
    assert rc == 2 and "no GPU the probe shows can be used" in err


@pytest.mark.parametrize("capture", ["rocm-smi_4xMI300X_model-rev-name-layout.txt",
                                     "rocm-smi-a_4xMI300X_showallinfo_driver-6.7.0.txt"])
def test_generate_for_an_amd_capture_pins_with_hip_visible_devices(capture: str, tmp_path: Path) -> None:
    """Two of the four MI300X: vLLM's ROCm docs pin GPUs with HIP_VISIBLE_DEVICES (vllm/platforms/rocm.py copies it
    to CUDA_VISIBLE_DEVICES), and the compose file carries the ROCm devices instead of an NVIDIA reservation."""
    out_dir = tmp_path / "deploy"
    rc, _, err = run("generate", *LLAMA_8B, "--from-file", str(AMD / capture), "--gpus", "2", "-o", str(out_dir))
    assert rc == 0, err
    compose = (out_dir / "docker-compose.yaml").read_text()
    assert 'HIP_VISIBLE_DEVICES: "0,1"' in compose and '"/dev/kfd"' in compose and "nvidia" not in compose
    assert "HIP_VISIBLE_DEVICES=0,1 vllm serve" in (out_dir / "serve_command.sh").read_text()
    assert "amd.com/gpu: 2" in (out_dir / "kubernetes" / "deployment.yaml").read_text()


def test_an_uncatalogued_amd_gpu_keeps_its_printed_partition_memory_and_its_vendor(tmp_path: Path) -> None:
    """MI300A (not in the catalog) in TPX: rocm-smi prints each partition's share, 33,580,773,376 B (INDEX.md:
    100,742,320,128 / 3), so it must not be divided again; and it is still an AMD GPU: ROCm pinning, ROCm image."""
    capture = "rocm-smi+showmeminfo_3xMI300A-TPX_memory-split.txt"
    rc, out, err = run("plan", *LLAMA_8B, "--from-file", str(AMD / capture), "--json")
    hw = json.loads(out)["hardware"]
    assert rc in (0, 3), err
    assert {d["memory_total_bytes"] for d in hw["devices"]} == {33_580_773_376}
    assert hw["vendor"] == "amd"
    out_dir = tmp_path / "d"
    rc, _, err = run("generate", *LLAMA_8B, "--from-file", str(AMD / capture), "--gpus", "1", "-o", str(out_dir))
    assert rc == 0, err
    script = (out_dir / "serve_command.sh").read_text()
    assert "HIP_VISIBLE_DEVICES=0 vllm serve" in script and "CUDA_VISIBLE_DEVICES" not in script


@pytest.mark.parametrize("value", ["²", "9" * 330, "0"])
def test_implausible_memory_figures_are_ignored_not_fatal(tmp_path: Path, value: str) -> None:
    """A superscript digit (str.isdigit() accepts it, int() does not), a 330-digit number, a zero: the figure is
    dropped (with a warning for the last two); detect never fails with a traceback."""
    capture = tmp_path / "r.txt"
    capture.write_text("GPU[0]\t\t: Card Series: \t\tAMD Instinct MI300X\n"
                       f"GPU[0]\t\t: VRAM Total Memory (B): {value}\n")
    rc, out, err = run("detect", "--from-file", str(capture), "--json")
    assert rc == 0, err
    (gpu,) = json.loads(out)["gpus"]
    assert gpu["memory_total_bytes"] is None and gpu["name"] == "AMD Instinct MI300X"


def test_a_json_boolean_is_not_a_gpu_index(tmp_path: Path) -> None:
    capture = tmp_path / "a.json"
    capture.write_text('[{"gpu": true, "asic": {"market_name": "MI300X"}}]')
    rc, _, err = run("detect", "--from-file", str(capture), "--json")
    assert rc == 2 and "no GPUs recognised" in err
