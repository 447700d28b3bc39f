"""`detect` (issue 20): vendor, health and MIG per GPU, merged captures, and no empty table for a capture
without GPUs. Expected values are read off the captures by hand (tests/data/nvidia-smi/INDEX.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clirun import one_error_line, run

SMI = Path(__file__).resolve().parents[2] / "tests" / "data" / "nvidia-smi"
MIB = 2**20


def detect(*files: Path) -> dict:
    rc, out, err = run("detect", *[a for f in files for a in ("--from-file", str(f))], "--json")
    assert rc == 0, err
    return json.loads(out)


def test_gpus_in_err_state_are_unhealthy_and_say_why() -> None:
    """INDEX.md: GPUs 2 and 3 of the 4 x A100 node print `ERR!` in the fan cell (and MIG M.)."""
    data = detect(SMI / "4xA100-80GB-PCIe_smi_595_two-GPUs-ERR.txt")
    assert [g["healthy"] for g in data["gpus"]] == [True, True, False, False]
    assert all(g["vendor"] == "nvidia" for g in data["gpus"])
    assert data["gpus"][2]["health_problems"] == ["fan read ERR!"]
    assert data["gpus"][0]["mig"] == {"mode": "disabled", "instances": []}
    assert data["gpus"][2]["mig"] is None  # MIG M. shows ERR!: unknown, not "disabled"


def test_mig_instances_from_the_table() -> None:
    """The A30's MIG box: 2g.12gb (11,968 MiB) and two 1g.6gb (5,952 MiB); the table prints no UUIDs."""
    (gpu,) = detect(SMI / "1xA30_smi_535_MIG-enabled_3instances.txt")["gpus"]
    assert gpu["mig"] == {"mode": "enabled", "instances": [
        {"profile": "2g.12gb", "memory_bytes": 11_968 * MIB, "uuid": None},
        {"profile": "1g.6gb", "memory_bytes": 5_952 * MIB, "uuid": None},
        {"profile": "1g.6gb", "memory_bytes": 5_952 * MIB, "uuid": None}]}


def test_mig_uuids_from_a_listing_merge_with_the_table() -> None:
    """`nvidia-smi -L` of the same A30 names the instances and their UUIDs (MIG-...)."""
    listing = (SMI / "1xA30_L_535_MIG.txt").read_text()
    uuids = [line.split("UUID: ")[1].rstrip(")") for line in listing.splitlines() if "MIG " in line]
    (gpu,) = detect(SMI / "1xA30_smi_535_MIG-enabled_3instances.txt", SMI / "1xA30_L_535_MIG.txt")["gpus"]
    assert [i["uuid"] for i in gpu["mig"]["instances"]] == uuids and all(u.startswith("MIG-") for u in uuids)
    assert [i["profile"] for i in gpu["mig"]["instances"]] == ["2g.12gb", "1g.6gb", "1g.6gb"]


def test_a_table_and_its_topology_merge() -> None:
    """8 x H100 SXM table plus its `topo -m` (every GPU pair NV18): 8 GPUs on NVLink, not an empty table."""
    data = detect(SMI / "8xH100-SXM_smi_565.txt", SMI / "8xH100-SXM_topo_NV18_10NIC_partial.txt")
    assert len(data["gpus"]) == 8 and data["interconnect"] == "nvlink"
    assert data["gpus"][0]["memory_total_bytes"] == 81_559 * MIB


@pytest.mark.parametrize("name", ["8xH100-SXM_topo_NV18_10NIC_partial.txt", "2xRTX5090_topo-p2p-rw_610_NOT-topo-m.txt"])
def test_a_topology_alone_is_an_error_naming_the_file(name: str) -> None:
    rc, out, err = run("detect", "--from-file", str(SMI / name))
    assert rc == 2 and out == ""
    line = one_error_line(err)
    assert name in line and "--from-file TABLE --from-file TOPO" in line


def test_pending_row_remap_is_a_fault(tmp_path: Path) -> None:
    """The real H100 `-q -x` prints <remapped_rows><remapped_row_pending>No and <retired_pages><pending_retirement>
    N/A: healthy. With the remap pending (one value flipped) the GPU needs a reset before use (NVIDIA's GPU memory
    error management guide), so it is unhealthy and a plan on it is refused."""
    real = SMI / "1xH100-80GB-HBM3_580" / "smi_q.xml"
    xml = real.read_text()
    assert xml.count("<remapped_row_pending>No</remapped_row_pending>") == 1
    (gpu,) = detect(real)["gpus"]
    assert gpu["healthy"] is True and gpu["health_problems"] == []
    capture = tmp_path / "q.xml"
    capture.write_text(xml.replace("<remapped_row_pending>No<", "<remapped_row_pending>Yes<"))
    (gpu,) = detect(capture)["gpus"]
    assert gpu["healthy"] is False and gpu["health_problems"] == ["memory row remapping pending (reset the GPU)"]
    rc, _out, err = run("plan", "--model", "meta-llama/Llama-3.2-1B-Instruct", "--from-file", str(capture), "--json")
    assert rc == 2 and "no GPU the probe shows can be used" in one_error_line(err)
    assert "row remapping pending" in err


def test_pending_retirement_in_a_csv_query(tmp_path: Path) -> None:
    """`--query-gpu=index,name,memory.total,retired_pages.pending --format=csv`: "Yes" is a fault."""
    capture = tmp_path / "q.csv"
    capture.write_text("index, name, memory.total [MiB], retired_pages.pending\n"
                       "0, Tesla V100-SXM2-16GB, 16384 MiB, Yes\n1, Tesla V100-SXM2-16GB, 16384 MiB, No\n")
    gpus = detect(capture)["gpus"]
    assert [g["healthy"] for g in gpus] == [False, True]
    assert gpus[0]["memory_total_bytes"] == 16_384 * MIB


def test_a_lost_gpu_is_never_planned_on(tmp_path: Path) -> None:
    """nvidia-smi prints "Unable to determine the device handle for GPU <bus>: GPU is lost" for a GPU that fell
    off the bus (Xid 79). Here the 8 x H100 table lists GPU 0 at 00000000:18:00.0 and the line names it."""
    capture = tmp_path / "smi.txt"
    capture.write_text((SMI / "8xH100-SXM_smi_565.txt").read_text()
                       + "Unable to determine the device handle for GPU 0000:18:00.0: GPU is lost.  "
                         "Reboot the system to recover this GPU\n")
    gpus = detect(capture)["gpus"]
    assert [g["index"] for g in gpus if not g["healthy"]] == [0]
    assert gpus[0]["health_problems"] == ["nvidia-smi: GPU is lost"]
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file", str(capture), "--json")
    plan = json.loads(out)
    used = [d["index"] for d in plan["hardware"]["devices"] if d["selected"]]
    assert rc == 0 and 0 not in used and used
    note = "left out: GPU 0 NVIDIA H100 80GB HBM3: nvidia-smi: GPU is lost"
    assert any(note in w["message"] for w in plan["warnings"])


def test_console_shows_health_and_mig() -> None:
    rc, out, _ = run("detect", "--from-file", str(SMI / "4xA100-80GB-PCIe_smi_595_two-GPUs-ERR.txt"))
    assert rc == 0 and "FAILING: fan read ERR!" in out and "disabled" in out


def test_plan_json_marks_the_gpus_it_left_out() -> None:
    """INDEX.md: GPUs 2 and 3 of the 4 x A100 node print ERR!; the plan uses GPUs 0 and 1 and says why not 2, 3."""
    rc, out, _ = run("plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file",
                     str(SMI / "4xA100-80GB-PCIe_smi_595_two-GPUs-ERR.txt"), "--json")
    devices = json.loads(out)["hardware"]["devices"]
    assert rc == 0
    assert [(d["index"], d["selected"], d["healthy"]) for d in devices] == [
        (0, True, True), (1, True, True), (2, False, False), (3, False, False)]
    assert devices[2]["left_out"] == ["fan read ERR!"] and devices[0]["left_out"] == []


def test_a_mig_uuid_that_is_no_uuid_is_not_carried(tmp_path: Path) -> None:
    """The UUID of `-L` goes into CUDA_VISIBLE_DEVICES and compose's device_ids: only MIG-<hex/dashes> is taken."""
    listing = (SMI / "1xA30_L_535_MIG.txt").read_text().replace(
        "(UUID: MIG-1b8509c0-e60d-502d-8263-d434867998aa)", "(UUID: MIG-`reboot`;${HOME})")
    capture = tmp_path / "l.txt"
    capture.write_text(listing)
    (gpu,) = detect(capture)["gpus"]
    first, *rest = [i["uuid"] for i in gpu["mig"]["instances"]]
    assert first is None and len(rest) == 2 and all(u.startswith("MIG-") for u in rest)
