"""Issue 20: a plan on one MIG slice asks for that slice, not a whole GPU, in every artifact.

Captures: tests/data/nvidia-smi/1xA30_smi_535_MIG-enabled_3instances.txt (the `nvidia-smi` table: slices
2g.12gb + 2 x 1g.6gb, no UUIDs) and 1xA30_L_535_MIG.txt (`nvidia-smi -L`: the same slices with their
MIG-... UUIDs). The planner picks the 2g.12gb slice (the largest) and never spans slices. Each expected
value is the documented one, with the page named; every file passes the validators of
tests/cli/test_generate.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cli.test_generate import assert_valid_compose, assert_valid_kubernetes, serve_commands
from tests.clirun import one_error_line, run
from tests.vllm_parser import assert_vllm_accepts

SMI = Path(__file__).resolve().parents[2] / "data" / "nvidia-smi"
MODEL = ["--model", "meta-llama/Llama-3.2-1B-Instruct"]
TABLE = SMI / "1xA30_smi_535_MIG-enabled_3instances.txt"
LISTING = SMI / "1xA30_L_535_MIG.txt"
UUID = "MIG-1b8509c0-e60d-502d-8263-d434867998aa"  # the 2g.12gb slice in 1xA30_L_535_MIG.txt

MIG_K8S = "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/gpu-operator-mig.html"


def _generate(tmp: Path, capture: Path) -> Path:
    out = tmp / "deploy"
    rc, _, err = run("generate", *MODEL, "--from-file", str(capture), "-o", str(out))
    assert rc == 0, err
    assert_valid_compose(out / "docker-compose.yaml")
    for f in sorted((out / "kubernetes").glob("*.yaml")):
        assert_valid_kubernetes(f)
    for argv in serve_commands(out):
        assert_vllm_accepts(argv, "0.33.0")
    assert subprocess.run(["bash", "-n", str(out / "serve_command.sh")], capture_output=True).returncode == 0
    return out


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("mig-table"), TABLE)


@pytest.fixture(scope="module")
def listing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("mig-list"), LISTING)


def _pod(out: Path) -> dict:
    return yaml.safe_load((out / "kubernetes" / "deployment.yaml").read_text())["spec"]["template"]["spec"]


def _reservation(out: Path) -> dict:
    svc = yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]["vllm"]
    return svc["deploy"]["resources"]["reservations"]["devices"][0]


@pytest.mark.parametrize("capture", ["table", "listing"])
def test_kubernetes_requests_the_mig_slice_resource(capture: str, request: pytest.FixtureRequest) -> None:
    out = request.getfixturevalue(capture)
    c = _pod(out)["containers"][0]
    # The device plugin's `mixed` MIG strategy advertises each slice type as nvidia.com/mig-<profile>
    # (https://github.com/NVIDIA/k8s-device-plugin README, MIG_STRATEGY; MIG_K8S), so one 2g.12gb slice is:
    assert c["resources"] == {"limits": {"nvidia.com/mig-2g.12gb": 1}, "requests": {"nvidia.com/mig-2g.12gb": 1}}
    text = (out / "kubernetes" / "deployment.yaml").read_text()
    # The `single` strategy alternative, in a comment: nvidia.com/gpu on nodes GPU feature discovery labels
    # nvidia.com/mig.strategy=single and nvidia.com/gpu.product=<GPU>-MIG-<profile> (k8s-device-plugin
    # docs/gpu-feature-discovery/README.md, "MIG 'single' strategy": e.g. A100-SXM4-40GB-MIG-1g.5gb)
    head = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "MIG strategy 'single'" in head and "nvidia.com/gpu: 1" in head
    assert "nvidia.com/mig.strategy=single" in head and "nvidia.com/gpu.product=NVIDIA-A30-MIG-2g.12gb" in head
    assert MIG_K8S in head


def test_compose_without_a_uuid_says_to_run_nvidia_smi_l(table: Path) -> None:
    dev = _reservation(table)
    assert dev["count"] == 1 and "device_ids" not in dev
    head = [line for line in (table / "docker-compose.yaml").read_text().splitlines() if line.startswith("#")]
    assert any("MIG slice 2g.12gb" in line and "nvidia-smi -L" in line and 'device_ids: ["MIG-<UUID>"]' in line
               for line in head)


def test_a_listed_uuid_pins_the_one_slice_everywhere(listing: Path, tmp_path: Path) -> None:
    # one slice per plan (planner/hardware/select.py: a vLLM process sees one MIG device), never spanning slices
    plan = json.loads((listing / "plan.json").read_text())
    hw = plan["hardware"]
    assert [d["mig_profile"] for d in hw["devices"] if d["selected"]] == ["2g.12gb"] and hw["visible_devices"] == UUID
    rc, _, err = run("generate", *MODEL, "--from-file", str(LISTING), "--gpus", "2", "-o", str(tmp_path / "d"))
    assert rc == 2 and "MIG" in one_error_line(err) and not (tmp_path / "d").exists()
    # CUDA_VISIBLE_DEVICES=MIG-<UUID> selects one MIG device (MIG User Guide, "CUDA Device Enumeration", R470+:
    # https://docs.nvidia.com/datacenter/tesla/mig-user-guide/)
    assert f"CUDA_VISIBLE_DEVICES={UUID} vllm serve" in plan["serve_command"]
    assert f"CUDA_VISIBLE_DEVICES={UUID} vllm serve" in (listing / "serve_command.sh").read_text()
    # `docker run --gpus device=` / NVIDIA_VISIBLE_DEVICES take a MIG UUID (NVIDIA Container Toolkit, "Specialized
    # Configurations with Docker"; MIG User Guide, "Running CUDA Applications as Containers"); Compose spells the
    # device list device_ids
    assert _reservation(listing) == {"driver": "nvidia", "device_ids": [UUID], "capabilities": ["gpu"]}
    head = [line for line in (listing / "docker-compose.yaml").read_text().splitlines() if line.startswith("#")]
    assert any(f"MIG slice 2g.12gb: reserved by its UUID {UUID}" in line for line in head)
    assert f"| MIG slice | 2g.12gb ({UUID}) |" in (listing / "README.md").read_text()


def test_the_serve_script_without_a_uuid_refuses_to_guess_the_slice(table: Path) -> None:
    script = (table / "serve_command.sh").read_text()
    assert "CUDA_VISIBLE_DEVICES:?set CUDA_VISIBLE_DEVICES=MIG-<UUID> of the 2g.12gb slice" in script
    r = subprocess.run(["bash", str(table / "serve_command.sh")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "MIG-<UUID> of the 2g.12gb slice" in r.stderr  # it stops before `vllm serve`


def test_mig_resource_names_only_mig_device_types() -> None:
    from planner.artifacts.accelerators import mig_resource

    # MIG device names are <slices>g.<memory>gb (MIG User Guide, "MIG Device Names"): 1g.10gb, 2g.12gb, 7g.80gb
    assert mig_resource("1g.10gb") == "nvidia.com/mig-1g.10gb"
    assert mig_resource("2g.12gb") == "nvidia.com/mig-2g.12gb"
    assert mig_resource("12GiB") is None and mig_resource(None) is None  # a size the planner derived is not a type
