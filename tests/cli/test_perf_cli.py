"""Speed in the CLI: plan's performance block and alternatives, fixes for infeasible plans, `sweep`."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from planner.cli import cli

LLAMA8 = ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100"]
LLAMA70 = ["--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "H100"]


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_performance_block_has_ranges_around_expected() -> None:
    rc, out, _ = run("plan", *LLAMA8, "--concurrency", "32", "--input-len", "512", "--output-len", "128", "--json")
    assert rc == 0
    p = json.loads(out)["performance"]
    assert p["workload"] == {"concurrency": 32, "input_len": 512, "output_len": 128}
    for k in ("itl_ms", "ttft_ms", "decode_tokens_per_s_per_request", "output_tokens_per_s_total",
              "prefill_tokens_per_s"):
        assert p[k]["low"] < p[k]["expected"] < p[k]["high"], k
    # decode tokens/s per request is 1000 / ITL, with the band flipped
    assert p["decode_tokens_per_s_per_request"]["expected"] == pytest.approx(1000 / p["itl_ms"]["expected"], rel=1e-3)
    assert p["decode_tokens_per_s_per_request"]["high"] == pytest.approx(1000 / p["itl_ms"]["low"], rel=1e-3)
    assert p["effective_concurrency"] == 32
    assert any("chunk" in a for a in p["assumptions"])


def test_concurrency_beyond_kv_runs_what_fits() -> None:
    # Qwen3-32B on one H100 at 32k prompts: the KV cache holds only a few of 256 requests.
    rc, out, _ = run("plan", "--model", "Qwen/Qwen3-32B", "--gpu", "H100", "--concurrency", "256",
                     "--input-len", "32000", "--output-len", "500", "--kv-cache-dtype", "auto", "--json")
    assert rc == 0
    plan = json.loads(out)
    kv_tokens = plan["memory"]["kv_cache_tokens"]
    assert plan["performance"]["effective_concurrency"] == kv_tokens // (32000 + 250)
    assert any("wait for a free slot" in a for a in plan["performance"]["assumptions"])


@pytest.mark.parametrize("mode", ["latency", "throughput"])
def test_alternatives_are_ranked_by_the_mode(mode: str) -> None:
    rc, out, _ = run("plan", *LLAMA70, "--gpus", "8", "--concurrency", "64", "--mode", mode, "--json")
    assert rc == 0
    alts = [a for a in json.loads(out)["alternatives"] if a["fits"] and not a["forbidden"]]
    assert len(alts) >= 3
    if mode == "latency":
        assert [a["itl_ms"] for a in alts] == sorted(a["itl_ms"] for a in alts)
    else:
        tput = [a["output_tokens_per_s_total"] for a in alts]
        assert tput == sorted(tput, reverse=True)
    assert all(a["change"] for a in alts)


def test_infeasible_plan_says_which_single_change_fits() -> None:
    rc, out, _ = run("plan", *LLAMA70, "--gpus", "2", "--max-model-len", "131072", "--kv-cache-dtype", "auto",
                     "--json")
    assert rc == 3
    plan = json.loads(out)
    changes = {f["change"]: f for f in plan["fixes"]}
    assert {"shorter context", "FP8 weights", "more GPUs"} <= set(changes)
    ctx = changes["shorter context"]
    assert ctx["flags"].startswith("--tp 2 --max-model-len ")  # each fix names the layout it was sized with
    n = int(ctx["flags"].removeprefix("--tp 2 --max-model-len "))
    assert 0 < n <= plan["memory"]["kv_cache_tokens"]  # one sequence fits in the KV cache that is left
    assert changes["more GPUs"]["flags"] == "--gpus 4 --tp 4"
    # FP8 weights: 70.55e9 params at 1 byte instead of 2 -> roughly half the weights per GPU
    assert changes["FP8 weights"]["weights_bytes"] < 0.55 * plan["memory"]["per_gpu"]["weights_bytes"]
    rc, text, _ = run("plan", *LLAMA70, "--gpus", "2", "--max-model-len", "131072", "--kv-cache-dtype", "auto")
    assert "To make it fit" in text and "--gpus 4 --tp 4" in text


def test_feasible_plan_has_no_fixes() -> None:
    rc, out, _ = run("plan", *LLAMA8, "--json")
    assert rc == 0 and json.loads(out)["fixes"] == []


def test_sweep_json_is_ranked_and_complete() -> None:
    rc, out, _ = run("sweep", "--model", "Qwen/Qwen3-32B", "--gpu", "H100", "--gpus", "4", "--concurrency", "64",
                     "--mode", "throughput", "--max-model-lens", "8192,40960", "--json")
    assert rc == 0
    data = json.loads(out)
    rows = data["rows"]
    # 7 layouts on 4 GPUs (TP 1/2/4 x PP 1/2/4 that fit in 4) x KV {auto, fp8} x weights {as is, fp8} x 2 lengths
    assert {r["max_model_len"] for r in rows} == {8192, 40960}
    assert {r["quantization"] for r in rows} == {None, "fp8"}
    assert {r["kv_cache_dtype"] for r in rows} == {"auto", "fp8"}
    ok = [r for r in rows if r["fits"] and not r["forbidden"]]
    tput = [r["output_tokens_per_s_total"] for r in ok]
    assert tput == sorted(tput, reverse=True)
    assert rows[: len(ok)] == ok  # fitting, allowed rows first


def test_sweep_csv_and_console() -> None:
    rc, out, _ = run("sweep", *LLAMA8, "--gpus", "2", "--csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {"itl_ms", "ttft_ms", "output_tokens_per_s_total", "kv_cache_tokens"} <= set(rows[0])
    rc, out, _ = run("sweep", *LLAMA8, "--gpus", "2")
    assert rc == 0 and "best first for mode balanced" in out


@pytest.mark.parametrize(("cmd", "args", "needle"), [
    ("plan", ["--concurrency", "0"], "--concurrency"),
    ("plan", ["--input-len", "-1"], "--input-len"),
    ("plan", ["--output-len", "0"], "--output-len"),
    ("sweep", ["--concurrency", "0"], "--concurrency"),
    ("sweep", ["--max-model-lens", "8192,abc"], "--max-model-lens"),
    ("sweep", ["--max-model-lens", "0"], "--max-model-lens"),
])
def test_bad_workload_is_one_line_exit_2(cmd: str, args: list[str], needle: str) -> None:
    rc, _, err = run(cmd, *LLAMA8, *args)
    assert rc == 2
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


@pytest.mark.parametrize("args", [
    ["--model", "Qwen/Qwen3-32B", "--gpu", "H100", "--max-model-len", "40960", "--gpu-memory-utilization", "0.5"],
    ["--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "L40S"],
    ["--model", "mistralai/Mixtral-8x7B-v0.1", "--gpu", "H100", "--max-model-len", "32768",
     "--gpu-memory-utilization", "0.6"],
    ["--model", "microsoft/phi-4", "--gpu", "rtx-3050"],  # 10 KV heads: only TP 1/2 valid, so PP is the way out
    ["--model", "meta-llama/Llama-3.1-405B", "--gpu", "H100"],  # needs two nodes
])
def test_every_fix_replans_to_a_plan_that_fits(args: list[str]) -> None:
    """Apply each suggested change to the same request and plan again: it must fit, with the KV it promised."""
    import shlex

    rc, out, err = run("plan", *args, "--json")
    assert rc == 3, err
    fixes = [f for f in json.loads(out)["fixes"] if f["flags"].startswith("--") and "(" not in f["flags"]]
    assert fixes, "an infeasible plan names at least one flag change"
    for f in fixes:
        flags = shlex.split(f["flags"])
        base = list(args)
        for word in flags:  # a fix's flag replaces the same flag in the request
            if word.startswith("--") and word in base:
                j = base.index(word)
                del base[j:j + 2]
        rc, out, err = run("plan", *base, *flags, "--json")
        assert rc == 0, (f, err)
        assert json.loads(out)["memory"]["kv_cache_tokens"] == f["kv_cache_tokens"], f


def test_requests_longer_than_the_context_are_flagged() -> None:
    rc, out, _ = run("plan", *LLAMA8, "--max-model-len", "1024", "--json")  # default request: 1024 + 256 tokens
    assert rc == 0
    codes = [w["code"] for w in json.loads(out)["warnings"]]
    assert "W-CONTEXT" in codes
    rc, out, _ = run("plan", *LLAMA8, "--max-model-len", "2048", "--json")
    assert "W-CONTEXT" not in [w["code"] for w in json.loads(out)["warnings"]]


def test_sweep_refuses_lengths_beyond_the_model() -> None:
    rc, _, err = run("sweep", *LLAMA8, "--max-model-lens", "1024,999999999")
    assert rc == 2 and "999999999 exceeds the model's maximum length 131072" in err


def test_every_catalog_interconnect_has_its_own_tp_latency() -> None:
    """No GPU fabric in the catalog silently falls back to the PCIe latency."""
    from planner.hardware.catalog import shipped_catalog
    from planner.policy.loader import load_packset

    params = load_packset(use_env=False).param_values()
    for spec in shipped_catalog().values():
        assert "tp_allreduce_us_per_layer_" + spec.interconnect.type.replace("-", "_") in params, spec.id
