"""The CLI contract: exit codes, one-line errors, JSON shape, and the decisions behind a plan."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SMI = ROOT / "tests" / "data" / "nvidia-smi"
LLAMA8 = ["--model", "meta-llama/Llama-3.1-8B-Instruct"]
H100 = ["--gpu", "H100"]


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def plan_json(*args: str, code: int = 0) -> dict:
    rc, out, err = run("plan", *args, "--json")
    assert rc == code, err
    return json.loads(out)


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_plan_llama8b_h100_contract() -> None:
    """Weights within 2% of the 16.06 GB vLLM loads; every setting is decided by a named rule."""
    p = plan_json(*LLAMA8, *H100)
    assert p["feasible"] is True
    weights = p["memory"]["per_gpu"]["weights_bytes"]
    assert abs(weights - 16.06e9) / 16.06e9 < 0.02
    for key in ("tensor_parallel_size", "kv_cache_dtype", "gpu_memory_utilization", "max_model_len", "max_num_seqs"):
        assert p["decisions"][key]["by"].startswith("rec."), key
    assert p["config"]["gpu_memory_utilization"] == 0.92  # vLLM 0.33 default
    assert p["serve_command"].startswith("vllm serve meta-llama/Llama-3.1-8B-Instruct")
    assert p["audit"]["packs"][0]["name"] == "core" and len(p["audit"]["packs"][0]["sha256"]) == 64
    per = p["memory"]["per_gpu"]
    parts = sum(per[k] for k in ("weights_bytes", "activation_peak_bytes", "non_torch_bytes", "cuda_graph_bytes",
                                  "kv_cache_bytes"))
    assert parts == per["budget_bytes"]


def test_site_pack_changes_decision_and_audit(tmp_path: Path) -> None:
    """A site rule wins over the vendor default, and the audit names the pack, its layer and what it beat."""
    p = plan_json(*LLAMA8, *H100, "--rules", str(ROOT / "examples" / "site" / "acme.yaml"))
    d = p["decisions"]["gpu_memory_utilization"]
    assert (d["value"], d["by"]) == (0.85, "site.acme.h100-util-085")
    assert d["superseded"][0]["rule"] == "rec.util.vllm-default"
    assert abs(p["memory"]["per_gpu"]["budget_bytes"] / p["memory"]["per_gpu"]["total_bytes"] - 0.85) < 1e-6
    layers = {pk["name"]: pk["layer"] for pk in p["audit"]["packs"]}
    assert layers == {"core": "vendor", "acme-site": "site"}
    assert "--gpu-memory-utilization 0.85" in p["serve_command"]


def test_infeasible_exits_3_with_json() -> None:
    """Llama-3.1-405B on one RTX 4090 does not fit; the JSON still prints, with the reason."""
    p = plan_json("--model", "meta-llama/Llama-3.1-405B", "--gpu", "NVIDIA GeForce RTX 4090", code=3)
    assert p["feasible"] is False
    assert "GiB per GPU" in p["infeasible_reason"]
    assert p["decisions"]["tensor_parallel_size"]["by"] == "rec.layout.closest-when-nothing-fits"


def test_context_is_clamped_when_one_sequence_does_not_fit() -> None:
    """Llama-3.1-70B on 2 x H100: TP2 weights fit (about 66 GiB each) but a 131072-token sequence (20 GiB per GPU)
    does not fit the few GiB left; the plan clamps max_model_len and stays feasible."""
    p = plan_json("--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "H100", "--gpus", "2")
    assert p["feasible"] is True
    assert p["config"]["tensor_parallel_size"] == 2
    d = p["decisions"]["max_model_len"]
    assert d["by"] == "rec.max-model-len.clamp-to-kv"
    assert 0 < p["config"]["max_model_len"] < 131072
    assert "W-CONTEXT-CLAMPED" in {w["code"] for w in p["warnings"]}
    assert f"--max-model-len {p['config']['max_model_len']}" in p["serve_command"]


def test_fp8_kv_under_pressure() -> None:
    """512 concurrent 4k-token requests need ~2.2 M tokens of KV, far above bf16 capacity: FP8 KV on Hopper."""
    p = plan_json(*LLAMA8, *H100, "--concurrency", "512", "--input-len", "4096")
    assert p["config"]["kv_cache_dtype"] == "fp8"
    assert p["decisions"]["kv_cache_dtype"]["by"] == "rec.kv-dtype.fp8-under-pressure"
    assert "--kv-cache-dtype fp8" in p["serve_command"]
    assert "W-KV-FP8" in {w["code"] for w in p["warnings"]}


def test_pinned_tp_beats_rules() -> None:
    p = plan_json(*LLAMA8, *H100, "--gpus", "2", "--tp", "2")
    d = p["decisions"]["tensor_parallel_size"]
    assert (d["value"], d["by"]) == (2, "user")
    # only TP2 layouts exist once --tp 2 is pinned, so the vendor rule proposes 2 as well, and loses to the pin
    assert {"rule": "rec.layout.best-for-mode", "value": 2, "why": "pinned by the user"} in d["superseded"]
    assert "--tensor-parallel-size 2" in p["serve_command"]


def test_balanced_mode_replicates_over_probed_gpus() -> None:
    """From a saved 8 x H100 capture: TP1 fits, so balanced mode runs 8 data-parallel replicas."""
    p = plan_json(*LLAMA8, "--from-file", str(SMI / "8xH100-SXM_smi_565.txt"))
    assert p["hardware"]["gpu_count"] == 8 and p["hardware"]["probed"] is True
    assert (p["config"]["tensor_parallel_size"], p["config"]["data_parallel_size"]) == (1, 8)
    assert p["memory"]["per_gpu"]["free_bytes"] is not None


def test_latency_mode_picks_the_lowest_itl_it_prints() -> None:
    """Latency mode: no alternative the plan lists with the same KV dtype and weights is faster than its choice."""
    p = plan_json(*LLAMA8, *H100, "--gpus", "8", "--mode", "latency")
    assert p["decisions"]["tensor_parallel_size"]["by"] == "rec.layout.best-for-mode"
    chosen = p["performance"]["itl_ms"]["expected"]
    same = [a for a in p["alternatives"] if a["fits"] and a["kv_cache_dtype"] == p["config"]["kv_cache_dtype"]
            and a["quantization"] == p["config"]["quantization"] and not a["forbidden"]]
    assert same and all(chosen <= a["itl_ms"] + 1e-6 for a in same)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["--model", "/nonexistent/model", *H100], "/nonexistent/model", id="missing-dir"),
        pytest.param([*LLAMA8, "--gpu", "H100X"], "H100X", id="unknown-gpu"),
        pytest.param([*LLAMA8, *H100, "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization", id="util>1"),
        pytest.param([*LLAMA8, *H100, "--gpu-memory-utilization", "0"], "--gpu-memory-utilization", id="util=0"),
        pytest.param([*LLAMA8, *H100, "--gpus", "4", "--tp", "3"], "not divisible by tensor_parallel_size 3",
                     id="tp-3"),
        pytest.param([*LLAMA8, *H100, "--tp", "2"], "needs more than the 1 GPU", id="tp>gpus"),
        pytest.param([*LLAMA8, *H100, "--pp", "2"], "--pp 2 x --dp 1 needs more than the 1 GPU", id="pp>gpus"),
        pytest.param([*LLAMA8, *H100, "--dp", "2"], "--dp 2 needs more than the 1 GPU", id="dp>gpus"),
        pytest.param([*LLAMA8, *H100, "--kv-cache-dtype", "int3"], "int3", id="kv-dtype"),
        pytest.param([*LLAMA8, *H100, "--max-model-len", "999999"], "exceeds the model's maximum length",
                     id="len>max"),
        pytest.param([*LLAMA8, *H100, "--quantization", "awq"], "--quantization awq", id="quant-needs-checkpoint"),
        pytest.param([*LLAMA8, *H100, "--dtype", "int7"], "--dtype", id="dtype"),
        pytest.param([*LLAMA8, *H100, "--vllm-version", "banana"], "banana", id="version"),
        pytest.param([*LLAMA8, "--from-file", str(SMI / "fail_NVML-driver-library-mismatch.txt")],
                     "nvidia-smi failed", id="smi-failure"),
        pytest.param([*LLAMA8, *H100, "--concurrency", "0"], "--concurrency", id="concurrency-0"),
        pytest.param([*LLAMA8, *H100, "--gpus", "-2"], "--gpus", id="gpus-negative"),
    ],
)
def test_bad_input_exit_2_one_line(args: list[str], needle: str) -> None:
    rc, out, err = run("plan", *args)
    assert rc == 2, (out, err)
    assert needle in one_error_line(err)
    assert out == ""


def test_bad_config_json_names_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    rc, _, err = run("plan", "--model", str(tmp_path), *H100)
    assert rc == 2
    assert "config.json" in one_error_line(err)


def test_broken_rule_pack_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nname: b\nversion: 1.0.0\nlayer: site\nrules:\n  - id: site.b.x\n    description: d\n"
                   "    stage: recommend\n    when:\n      g: {fact: gpu}\n    then:\n      - explode: now\n")
    rc, _, err = run("plan", *LLAMA8, *H100, "--rules", str(bad))
    assert rc == 2
    line = one_error_line(err)
    assert f"{bad}:12: site.b.x: then[0]: unknown verb 'explode'" in line


def test_unknown_option_is_one_line() -> None:
    rc, _, err = run("plan", *LLAMA8, "--frobnicate")
    assert rc == 2
    assert "--frobnicate" in one_error_line(err)


@pytest.mark.parametrize("cmd", [[], ["plan"], ["detect"], ["gpus"], ["models"], ["rules"], ["rules", "list"],
                                 ["rules", "show"], ["rules", "lint"], ["rules", "test"]])
def test_help_everywhere(cmd: list[str]) -> None:
    rc, out, _ = run(*cmd, "--help")
    assert rc == 0 and "Usage" in out


def test_gpus_and_models_list() -> None:
    rc, out, _ = run("gpus", "--json")
    assert rc == 0 and len(json.loads(out)["gpus"]) >= 30
    rc, out, _ = run("models", "--json")
    assert rc == 0
    ids = {m["id"] for m in json.loads(out)["models"]}
    assert "meta-llama/Llama-3.1-8B-Instruct" in ids and len(ids) >= 40


def test_hub_id_offline_fails_fast_and_cleanly(tmp_path: Path) -> None:
    """A hub id outside the catalog with the hub unreachable: exit 2, one line, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave the block: connection refused
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "0"}
    r = subprocess.run([sys.executable, "-m", "planner.cli", "plan", "--model", "acme/not-in-catalog", *H100],
                       capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "acme/not-in-catalog" in one_error_line(r.stderr)


def test_reference_evaluator_plans_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python 3.13+ fallback (reference evaluator) reaches the same decisions as durable-rules."""
    args = (*LLAMA8, "--gpu", "H100", "--gpus", "4", "--concurrency", "256", "--input-len", "8192")
    monkeypatch.setenv("VLLM_PLANNER_EVALUATOR", "durable")
    durable = plan_json(*args)
    monkeypatch.setenv("VLLM_PLANNER_EVALUATOR", "reference")
    reference = plan_json(*args)
    assert reference["audit"]["engine"] == "reference"
    assert {k: v["value"] for k, v in durable["decisions"].items()} == \
        {k: v["value"] for k, v in reference["decisions"].items()}
    assert sorted(f["rule"] for f in durable["audit"]["firings"]) == \
        sorted(f["rule"] for f in reference["audit"]["firings"])


def test_bitsandbytes_is_version_gated(tmp_path: Path) -> None:
    """A bitsandbytes checkpoint plans on vLLM 0.25 and is refused, with the reason, on 0.33 (removed in 0.29)."""
    cfg = json.loads((ROOT / "planner/models/catalog/meta-llama/Llama-3.1-8B-Instruct/config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    old = plan_json("--model", str(tmp_path), "--gpu", "L4", "--vllm-version", "0.25.0")
    assert old["feasible"] and old["config"]["quantization"] == "bitsandbytes"
    new = plan_json("--model", str(tmp_path), "--gpu", "L4", code=3)
    assert new["infeasible_reason"].startswith("forbidden by policy: sizing.forbid.bitsandbytes-removed")


def test_expert_parallel_pin() -> None:
    """EP on an MoE model: same bytes when the experts divide evenly (128 over 4 GPUs), flag in the serve
    command; on a dense model it is an input error."""
    base = ("--model", "Qwen/Qwen3-30B-A3B", "--gpu", "H100", "--gpus", "4")
    plain = plan_json(*base)
    ep = plan_json(*base, "--enable-expert-parallel")
    assert ep["memory"]["per_gpu"]["weights_bytes"] == plain["memory"]["per_gpu"]["weights_bytes"]
    assert "--enable-expert-parallel" in ep["serve_command"]
    rc, _, err = run("plan", *LLAMA8, *H100, "--enable-expert-parallel")
    assert rc == 2 and "not a mixture-of-experts model" in one_error_line(err)
