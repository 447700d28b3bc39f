"""Plans for the machine as probed: memory in use, MIG slices, mixed GPUs, topology (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from planner.cli import cli

SMI = Path(__file__).resolve().parents[2] / "tests" / "data" / "nvidia-smi"


def plan(*args: str) -> tuple[int, dict, str]:
    r = CliRunner().invoke(cli, ["plan", *args, "--json"])
    return r.exit_code, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}), r.stderr


def test_two_3090s_running_vllm_do_not_have_the_free_memory() -> None:
    """The capture shows 24,064 MiB of 24,576 used by two vLLM workers: the 0.92 budget cannot start."""
    capture = str(SMI / "2xRTX3090_smi_560_procs-vLLM.txt")
    rc, p, _ = plan("--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file", capture)
    assert rc == 3 and not p["feasible"]
    reason = p["infeasible_reason"]
    # free = CUDA total (23.58 GiB, catalog) - 22,943 MiB used = 1.17 GiB; short by budget - (free - context)
    assert "only 1.17 GiB of 23.58 GiB is free" in reason and "short by" in reason
    assert "VLLM::Worker_TP0 (pid 2921" in reason and "--ignore-used" in reason
    # free = the catalog's CUDA total for an RTX 3090 (23.58 GiB, measured) - nvidia-smi's 22,943 MiB used
    assert p["memory"]["per_gpu"]["free_bytes"] == 25_318_916_096 - 22_943 * 2**20
    rc, empty, _ = plan("--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file",
                        str(SMI / "2xRTX3090_smi_560_procs-vLLM.txt"), "--ignore-used")
    assert rc == 0 and empty["memory"]["per_gpu"]["free_bytes"] is None


def test_partly_used_gpu_gets_a_lower_utilization(tmp_path: Path) -> None:
    """A GPU with 8 GiB held by another process: the vendor rule lowers utilization to what is free."""
    text = (SMI / "1xL40S_smi_550.txt").read_text()
    used = text.replace("      1MiB /  46068MiB", "   8192MiB /  46068MiB")
    assert used != text
    f = tmp_path / "l40s-used.txt"
    f.write_text(used)
    rc, p, _ = plan("--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file", str(f))
    assert rc == 0, p.get("infeasible_reason")
    d = p["decisions"]["gpu_memory_utilization"]
    assert d["by"] == "rec.util.fit-free-memory" and d["value"] < 0.92
    assert "W-MEMORY-IN-USE" in {w["code"] for w in p["warnings"]}


def test_a30_mig_plans_on_one_slice() -> None:
    rc, p, _ = plan("--model", "meta-llama/Llama-3.2-1B-Instruct", "--from-file",
                    str(SMI / "1xA30_smi_535_MIG-enabled_3instances.txt"))
    assert rc == 0
    h = p["hardware"]
    assert h["gpu_count"] == 1 and h["memory_bytes_per_gpu"] == 12_549_357_568  # the 2g.12gb slice, 11,968 MiB
    assert any("MIG is enabled" in n and "2g.12gb" in n for n in h["notes"])
    assert [d["mig_profile"] for d in h["devices"]] == ["2g.12gb", "1g.6gb", "1g.6gb"]


def test_mig_uuid_pins_the_slice_and_tp_across_slices_is_refused() -> None:
    rc, p, _ = plan("--model", "meta-llama/Llama-3.2-1B-Instruct", "--from-file", str(SMI / "1xA30_L_535_MIG.txt"),
                    "--vram-gib", "11.6")
    assert rc == 0
    assert p["serve_command"].startswith(
        "CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=MIG-1b8509c0-e60d-502d-8263-d434867998aa vllm serve")
    rc, _, err = plan("--model", "meta-llama/Llama-3.2-1B-Instruct", "--from-file", str(SMI / "1xA30_L_535_MIG.txt"),
                      "--gpus", "2")
    assert rc == 2 and "one MIG device" in err


def test_mixed_5090_4090_explains_and_pins() -> None:
    rc, p, _ = plan("--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file",
                    str(SMI / "1xRTX5090+1xRTX4090_smi_580_mixed.txt"))
    assert rc == 0
    h = p["hardware"]
    assert h["gpu"] == "NVIDIA GeForce RTX 5090" and h["visible_devices"] == "0"
    assert "Tensor parallelism needs matching devices" in h["notes"][0]
    assert p["serve_command"].startswith("CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0 vllm serve")


def test_mixed_falls_back_to_the_bounded_pair_when_needed() -> None:
    """phi-4 (14.7 B, 27.3 GiB in bf16) does not fit one RTX 5090's budget; both GPUs at the 4090's size do."""
    rc, p, _ = plan("--model", "microsoft/phi-4", "--from-file", str(SMI / "1xRTX5090+1xRTX4090_smi_580_mixed.txt"))
    assert rc == 0, p.get("infeasible_reason")
    h = p["hardware"]
    assert h["gpu_count"] == 2 and p["config"]["tensor_parallel_size"] == 2
    assert abs(h["memory_bytes_per_gpu"] / 2**30 - 23.64) < 0.05  # bounded by the RTX 4090
    assert any("bounded by the smallest" in n for n in h["notes"])


def test_topology_places_tp_on_nvlink() -> None:
    base = ["--model", "meta-llama/Llama-3.2-3B-Instruct", "--from-file", str(SMI / "2xRTX3090_smi_560.txt"),
            "--mode", "latency"]
    rc, p, _ = plan(*base, "--from-file", str(SMI / "2xRTX3090_topo_NV4-bridge_560.txt"))
    assert rc == 0 and p["hardware"]["tp_group"] == [0, 1] and p["hardware"]["interconnect"] == "nvlink"
    assert any("joined by NVLink (NV4)" in w["message"] for w in p["warnings"])
    rc, p, _ = plan(*base, "--from-file", str(SMI / "2xRTX3090_topo_SYS_NUMA-NA-extra-cols_595.txt"))
    assert rc == 0 and p["hardware"]["interconnect"] == "pcie"
    assert any("no 2 GPUs are all joined by NVLink" in w["message"] for w in p["warnings"])


def test_console_shows_free_vs_total_per_gpu() -> None:
    r = CliRunner().invoke(cli, ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file",
                                 str(SMI / "2xRTX3090_smi_560_procs-vLLM.txt")])
    assert r.exit_code == 3
    assert "GPUs on this machine" in r.stdout and "free now" in r.stdout and "VLLM::Worker_TP0" in r.stdout


PROCESS_CAPTURES = ["1xH200_smi_580_watch-header_procs.txt", "1xH100-PCIe_smi_580_VM-busid_vLLM-proc.txt",
                    "2xRTX3090_smi_560_procs-vLLM.txt", "WSL_1xRTX2070_smi_460_WDDM_procs.txt",
                    "1xT4_smi_510_Xorg-procs_partial.txt"]
MIG_CAPTURES = ["1xA30_smi_535_MIG-enabled_3instances.txt", "1xA30_L_535_MIG.txt",
                "NxA100-SXM-80GB_smi_495_MIGenabled_partial.txt", "1xV100-SXM2-16GB_smi_450-vs-418_Colab_MIG-ERR.txt"]
MIXED_CAPTURES = ["1xRTX5090+1xRTX4090_smi_580_mixed.txt", "L_2xTITANV+RTX5880Ada_570.txt",
                  "csv_2xTITANV+RTX5880Ada_570_compute_cap_header.txt"]
P2P_CAPTURE = "2xRTX5090_topo-p2p-rw_610_NOT-topo-m.txt"  # `topo -p2p rw`: a capability matrix, not `topo -m`
TOPO_CAPTURES = [*sorted(p.name for p in SMI.glob("*topo*") if p.name != P2P_CAPTURE),
                 "collectenv-topology_2xGPU_NV12_8NIC_emptyAffinity_spaces.txt"]


def _plan_capture(name: str, *extra: str) -> tuple[int, dict, str]:
    """Plan a 1B model from the capture; --vram-gib sizes GPUs the capture and catalog leave unsized."""
    return plan("--model", "meta-llama/Llama-3.2-1B-Instruct", "--from-file", str(SMI / name), "--vram-gib", "16",
                *extra)


import pytest  # noqa: E402

from planner.policy.loader import load_packset  # noqa: E402

CONTEXT_GIB = load_packset(use_env=False).param_values()["context_baseline_gib"]


@pytest.mark.parametrize("name", PROCESS_CAPTURES)
def test_process_captures_account_for_memory_in_use(name: str) -> None:
    """Each capture with processes: the plan reports what is free, and never plans past it silently."""
    rc, p, err = _plan_capture(name)
    assert rc in (0, 3), err
    free, total = p["memory"]["per_gpu"]["free_bytes"], p["memory"]["per_gpu"]["total_bytes"]
    assert free is not None and free < total
    usable = free - CONTEXT_GIB * 2**30  # what vLLM finds after its own CUDA context
    if p["feasible"]:
        assert p["memory"]["per_gpu"]["budget_bytes"] <= usable
    else:
        assert "vLLM will refuse to start" in p["infeasible_reason"] or "GiB" in p["infeasible_reason"]


def test_mig_enabled_without_instances_is_not_planned_as_whole_gpus() -> None:
    """The A100 capture shows MIG M. `Enabled` on both GPUs and no MIG devices box: CUDA enumerates only MIG
    instances on such a GPU (NVIDIA MIG user guide, "CUDA device enumeration"), so there is nothing to run on."""
    rc, p, err = _plan_capture("NxA100-SXM-80GB_smi_495_MIGenabled_partial.txt")
    assert rc == 2 and p == {}
    assert "no GPU the probe shows can be used" in err and "MIG is enabled but the capture lists no MIG instance" in err


@pytest.mark.parametrize("name", [n for n in MIG_CAPTURES if "MIGenabled_partial" not in n])
def test_mig_captures(name: str) -> None:
    """MIG on: the plan uses exactly one slice; MIG off or broken (Colab ERR!): whole GPUs, no slice."""
    rc, p, err = _plan_capture(name)
    assert rc in (0, 3), err
    h = p["hardware"]
    migs = [d for d in h["devices"] if d["mig_profile"]]
    if migs:
        assert h["gpu_count"] == 1 and sum(d["selected"] for d in h["devices"]) == 1
        assert any("MIG is enabled" in n for n in h["notes"])
    else:
        assert not any("MIG" in n for n in h["notes"])


@pytest.mark.parametrize("name", MIXED_CAPTURES)
def test_mixed_captures_explain_their_choice(name: str) -> None:
    rc, p, err = _plan_capture(name)
    assert rc in (0, 3), err
    h = p["hardware"]
    assert any(n.startswith("mixed GPUs:") for n in h["notes"])
    chosen = {d["name"] for d in h["devices"] if d["selected"]}
    assert len(chosen) == 1 or any("bounded by the smallest" in n for n in h["notes"])


@pytest.mark.parametrize("name", TOPO_CAPTURES)
def test_topology_captures_decide_the_link(name: str) -> None:
    """Each topology matrix: a TP group is placed and the plan says over which link."""
    rc, p, err = _plan_capture(name, "--mode", "latency")
    assert rc in (0, 3), err
    h = p["hardware"]
    if p["config"]["tensor_parallel_size"] > 1:
        msgs = [w["message"] for w in p["warnings"] if w["code"] == "W-PLACEMENT"]
        assert msgs and ("joined by NVLink" in msgs[0] or "talks over" in msgs[0])
        assert h["interconnect"] in ("nvlink", "pcie")


def test_p2p_matrix_alone_is_not_a_machine() -> None:
    """`nvidia-smi topo -p2p rw` lists no GPUs or links the planner can use: a clear exit 2."""
    rc, _, err = _plan_capture(P2P_CAPTURE)
    assert rc == 2 and "no GPUs found" in err

