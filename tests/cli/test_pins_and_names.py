"""Pins in vLLM's own spelling, and `did you mean` for GPU and model names the catalogs do not hold."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from planner.artifacts.profile import profile_request, profile_yaml, read_profile
from planner.schemas import PlanRequest
from tests.clirun import one_error_line, run

ROOT = Path(__file__).resolve().parents[2]
LLAMA8 = ["--model", "meta-llama/Llama-3.1-8B-Instruct"]
H100 = ["--gpu", "H100"]


def config(*args: str) -> dict:
    rc, out, err = run("plan", *args, "--json")
    assert rc == 0, err
    return json.loads(out)["config"]


@pytest.mark.parametrize(("vllm_flag", "short", "key"), [
    ("--tensor-parallel-size", "--tp", "tensor_parallel_size"),
    ("--pipeline-parallel-size", "--pp", "pipeline_parallel_size"),
])
def test_vllm_spelling_pins_like_the_short_flag(vllm_flag: str, short: str, key: str) -> None:
    assert config(*LLAMA8, *H100, "--gpus", "2", vllm_flag, "2")[key] == 2
    assert config(*LLAMA8, *H100, "--gpus", "2", short, "2")[key] == 2
    assert config(*LLAMA8, *H100, "--gpus", "2", short, "2", vllm_flag, "2")[key] == 2  # agreeing: fine


@pytest.mark.parametrize("command", ["plan", "sweep", "generate"])
@pytest.mark.parametrize(("args", "flags"), [
    (["--tp", "2", "--tensor-parallel-size", "4"], ("--tp 2", "--tensor-parallel-size 4")),
    (["--pipeline-parallel-size", "2", "--pp", "1"], ("--pp 1", "--pipeline-parallel-size 2")),
    (["--dp", "2", "--data-parallel-size", "4"], ("--dp 2", "--data-parallel-size 4")),
])
def test_both_spellings_disagreeing_is_exit_2(command: str, args: list[str], flags: tuple[str, str],
                                              tmp_path: Path) -> None:
    extra = ["-o", str(tmp_path / "out")] if command == "generate" else []
    rc, _, err = run(command, *LLAMA8, *H100, "--gpus", "8", *args, *extra)
    line = one_error_line(err)
    assert rc == 2
    assert all(f in line for f in flags), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "named"), [
    (["--data-parallel-size", "0"], "--data-parallel-size:"),
    (["--dp", "0"], "--dp:"),
    (["--tensor-parallel-size", "0"], "--tensor-parallel-size:"),
])
def test_a_bad_pin_names_the_spelling_used(args: list[str], named: str) -> None:
    rc, _, err = run("plan", *LLAMA8, *H100, *args)
    assert rc == 2 and one_error_line(err).startswith(f"error: {named} Input should be greater than or equal to 1")


def test_data_parallel_pin_is_carried_through_a_profile(tmp_path: Path) -> None:
    """--data-parallel-size lands in the request's pins and round-trips through profile.yaml."""
    out = tmp_path / "deploy"
    rc, _, err = run("generate", *LLAMA8, *H100, "--data-parallel-size", "1", "-o", str(out))
    assert rc == 0, err
    assert "data_parallel_size: 1 # --data-parallel-size / --dp" in (out / "profile.yaml").read_text()
    assert read_profile(out / "profile.yaml")["pinned"]["data_parallel_size"] == 1

    req = PlanRequest.model_validate({"model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "H100", "gpus": 8,
                                      "pinned": {"data_parallel_size": 4, "tensor_parallel_size": 2}})
    data = profile_request(req, vllm_version="0.33.0", gpu=None, gpus=8, base=tmp_path)
    (tmp_path / "p.yaml").write_text(profile_yaml(data, stamp_line="test", plan_id="0"))
    again = PlanRequest.model_validate(read_profile(tmp_path / "p.yaml"))
    assert (again.pinned.data_parallel_size, again.pinned.tensor_parallel_size) == (4, 2)


def test_vllm_spelling_on_the_command_line_wins_over_the_profile(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    rc, _, err = run("generate", *LLAMA8, *H100, "--gpus", "2", "--tensor-parallel-size", "2", "-o", str(out))
    assert rc == 0, err
    prof = str(out / "profile.yaml")
    assert config("--profile", prof)["tensor_parallel_size"] == 2
    assert config("--profile", prof, "--tensor-parallel-size", "1")["tensor_parallel_size"] == 1


def test_unknown_gpu_suggests_the_closest_catalog_entries() -> None:
    rc, _, err = run("plan", *LLAMA8, "--gpu", "H1000")
    line = one_error_line(err)
    assert rc == 2
    assert line.startswith("error: unknown GPU 'H1000'")
    suggested = line.split("did you mean: ", 1)[1].removesuffix("?").split(", ")
    assert suggested[0] == "H100" and len(suggested) <= 3


def test_gpu_with_nothing_close_gets_no_suggestion() -> None:
    rc, _, err = run("plan", *LLAMA8, "--gpu", "zzzz")
    assert rc == 2 and "did you mean" not in one_error_line(err)


@pytest.mark.parametrize("model", ["meta-llama/Llama-3.1-8B-Instrcut", "Llama-3.1-8B-Instruct",
                                   "META-LLAMA/llama-3.1-8b-instruckt"])
def test_misspelt_model_suggests_the_bundled_id(model: str, tmp_path: Path) -> None:
    """Not in the catalog and the hub offline (HF_HUB_OFFLINE=1, an unreachable endpoint besides):
    exit 2, one line ending with the closest bundled ids, the intended one first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave the block: nothing listens there
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "planner.cli", "plan", "--model", model, *H100],
                       capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    line = one_error_line(r.stderr)
    assert r.returncode == 2
    assert line.endswith("?") and model in line
    suggested = line.split("did you mean: ", 1)[1].removesuffix("?").split(", ")
    assert suggested[0] == "meta-llama/Llama-3.1-8B-Instruct" and len(suggested) <= 3
