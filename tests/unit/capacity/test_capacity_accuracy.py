"""Regression guard: the capacity load model vs measured vLLM runs (benchmarks/capacity_accuracy.py).

Issue 18's bar: saturation(rep).max_rate within 30% of the measured requests/s for at least 80% of the
saturation runs of EACH set (calibration: perf_points.json; held out: GPUStack lab bursts).

THE CURRENT MODEL DOES NOT MEET IT (pack core as of this commit):
    calibration  4/6 within 30% (67%), median |error| 22.8%; misses: P044 x1.76 (KV-bound Qwen3-32B on one
                 H100: vLLM preempts and recomputes, measured TPOT 40% above the roofline), P081 x1.58 (H100 NVL
                 under vLLM 0.8.5; the same miss as perf_accuracy's throughput)
    held out     23/55 within 30% (42%), median |error| 52.7%; the 128-in/4-out bursts (3/15 within, up to x12.5:
                 ~45 req/s for Qwen3-14B, Qwen3-32B and DeepSeek-R1 alike, on A100, H100 and 8 x H200, i.e. not
                 GPU time) and the 32000-in bursts (3/15 within, x1.45-2.8: long-context prefill slower than the
                 fitted prefill MFU)
So test_current_numbers pins those figures (no worse), and test_acceptance_bar is a strict xfail that starts
failing -- and must then become a plain test -- once both sets reach the bar. See benchmarks/README.md,
"Capacity accuracy (issue 18)". Nothing here is tuned to the measured rows.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from planner import perf
from planner.capacity.load import Replica, saturation

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("capacity_accuracy", ROOT / "benchmarks" / "capacity_accuracy.py")
assert spec and spec.loader
ca = importlib.util.module_from_spec(spec)
sys.modules["capacity_accuracy"] = ca
spec.loader.exec_module(ca)
pa = ca.pa  # benchmarks/perf_accuracy.py, as capacity_accuracy imported it


@pytest.fixture(scope="module")
def result() -> dict:
    return ca.report(with_sim=False)  # the simulator has its own tests; this guards the closed form


def test_current_numbers(result: dict) -> None:
    """The honest figures of the current model: may improve, must not get worse (update them when they improve)."""
    cal = result["max_rate"]["calibration"]["summary"]
    held = result["max_rate"]["held_out"]["summary"]
    assert cal["n"] == 6, cal
    assert cal["within_n"] >= 4, cal  # 4/6 = 67% < the 80% bar: P044, P081 miss (module docstring)
    assert cal["median_abs_error"] <= 0.23, cal  # 22.8%
    assert held["n"] >= 55, held
    assert held["within_30pct"] >= 23 / 55 - 1e-9, held  # 42% < the 80% bar: 128/4 and 32k bursts (docstring)
    assert held["median_abs_error"] <= 0.53, held  # 52.7%


@pytest.mark.xfail(strict=True, reason="issue 18's bar is not met by the current model (module docstring); "
                                       "when this passes, drop the xfail")
def test_acceptance_bar(result: dict) -> None:
    for name in ("calibration", "held_out"):
        s = result["max_rate"][name]["summary"]
        assert s["within_30pct"] >= ca.BAR, (name, s)
    assert not ca.failures(result)


def test_every_point_is_scored_or_skipped_with_a_reason(result: dict) -> None:
    for name in ("calibration", "held_out"):
        s = result["max_rate"][name]
        assert s["records"], name
        assert all(isinstance(v, str) and v.strip() for v in s["skipped"].values()), name
        assert not {r["id"] for r in s["records"]} & set(s["skipped"]), name
    assert all(v.strip() for v in result["fixed_rate"]["skipped"].values())
    # every saturation row of perf_points.json and every lab run is accounted for
    rows = json.loads((pa.DATA / "perf_points.json").read_text())["points"]
    sat_rows = {r["id"] for r in rows if ca.is_saturation_row(r)}
    cal = result["max_rate"]["calibration"]
    assert sat_rows == {r["id"] for r in cal["records"]} | set(cal["skipped"])
    assert {"P044", "P049", "P054", "P056", "P059", "P081"} == {r["id"] for r in cal["records"]}
    assert cal["skipped"]["P051"].startswith("drain of too few prompts")  # 1000 prompts, 850-sequence batches
    runs = json.loads((pa.DATA / pa.LAB_FILE).read_text())["runs"]
    held = result["max_rate"]["held_out"]
    assert {r["id"] for r in runs} == {r["id"] for r in held["records"]} | set(held["skipped"])


def test_fixed_rate_points(result: dict) -> None:
    """P036 (1 req/s), P039 (4 req/s), P079 (16 req/s) are compared; at low load the medians hold (no tuning)."""
    recs = {(r["id"], r["metric"]): r for r in result["fixed_rate"]["records"]}
    assert {i for i, _ in recs} == {"P036", "P039", "P079"}
    for key in (("P036", "TTFT p50"), ("P036", "ITL p50"), ("P079", "TTFT mean"), ("P079", "TPOT mean")):
        assert 0.8 <= recs[key]["ratio"] <= 1.25, recs[key]


def test_max_rate_by_hand() -> None:
    """P081: Qwen3-32B on one H100 NVL, --max-num-seqs 32, ShareGPT 217 in / 200 out, bf16, vLLM V1 (chunked).

    cap        min(max_num_seqs 32, KV 86,080 tokens // (217 + 200/2) = 271, budget 8192 x 200 // 417 = 3929) = 32
    ctx        217 + 200 // 2 = 317 tokens
    step(b)    weights 65.53e9 B / (3.9e12 B/s x 0.89)                      = 18.88 ms
               + KV b x 317 x 262,144 B / (3.9e12 x 0.89)                   (b = 32: 0.77 ms)
               + (2 x 32.76e9 x b + 4 x 64 x 64 x 128 x b x 317) / (835.5e12 x compute_mfu 0.5675)   (b = 32: 4.47 ms)
               + 64 layers x 22.92 us + 0.875 ms                            = 2.34 ms
               step(32) = 26.46 ms, step(31) = 26.29 ms
    prompt     per token (2 x 32.76e9 + 2 x 64 x 64 x 128 x 217) / (835.5e12 x prefill_mfu 0.635) = 0.1239 ms
    ITL        step(32) + (32 - 1) / 200 x 217 x 0.1239                     = 26.46 + 4.17 = 30.62 ms
    own        one chunk riding in step(31) + 217 x 0.1239                  = 26.29 + 26.89 = 53.19 ms
    ahead      31 x (own / (own + 199 x ITL)) x 217 x 0.1239 / 2            = 3.61 ms
    TTFT       own + ahead + step(32) / 2 + 35 ms serving path              = 105.02 ms
    max_rate   32 / (TTFT + 199 x ITL) = 32 / 6.1992 s                      = 5.162 req/s   (measured 3.26)
    """
    rows = {r["id"]: r for r in json.loads((pa.DATA / "perf_points.json").read_text())["points"]}
    pp = pa.prepare([p for p in pa.POINTS if p.id == "P081"], rows)[0]
    inp, prm = pp.inputs, dict(pp.params)
    assert (inp.max_num_seqs, inp.input_len, inp.output_len, inp.tp, inp.dp) == (32, 217, 200, 1, 1)
    assert prm["chunked_prefill"]
    cap = min(inp.max_num_seqs, inp.kv_cache_tokens // (217 + 100), inp.max_num_batched_tokens * 200 // 417)
    assert cap == 32
    ctx = 217 + 100
    bw = inp.bandwidth_bytes_per_s * prm["decode_bw_efficiency"]

    def step(b: int) -> float:  # ms; a dense bf16 model on one GPU: no experts, no TP collectives, no pipeline
        mem = inp.weights_bytes_per_gpu / (bw * prm["quant_bw_factor"]) + b * ctx * inp.kv_bytes_per_token_per_gpu / bw
        flops = 2 * inp.active_params * b + 4 * inp.num_layers * inp.num_attention_heads * inp.head_dim * b * ctx
        fixed = inp.num_layers * prm["decode_layer_overhead_us"] / 1000 + prm["decode_step_overhead_ms"]
        return (mem + flops / (inp.peak_flops * prm["compute_mfu"])) * 1000 + fixed

    ppt = (2 * inp.active_params + 2 * inp.num_layers * inp.num_attention_heads * inp.head_dim * 217) \
        / (inp.peak_flops * prm["prefill_mfu"]) * 1000
    itl = step(32) + (32 - 1) / 200 * 217 * ppt
    own = step(31) + 217 * ppt  # 217 prompt tokens fit one chunk (8192 - 31 tokens of room)
    ahead = 31 * min(1.0, own / (own + 199 * itl)) * 217 * ppt / 2
    ttft = own + ahead + step(32) / 2 + prm["ttft_overhead_ms"]
    by_hand = 32 * 1000 / (ttft + 199 * itl)

    assert step(32) == pytest.approx(perf.decode_step_ms(inp, 32, ctx, prm), rel=1e-9)
    sat = saturation(Replica(inp, prm))
    assert (sat.running_cap, sat.limited_by) == (32, "max_num_seqs")
    assert sat.max_rate == pytest.approx(by_hand, rel=1e-9)
    est = perf.estimate(replace(inp, concurrency=32), prm)
    assert est is not None and est.output_tokens_per_s_total / 200 == pytest.approx(by_hand, rel=1e-9)
    assert 5.0 < by_hand < 5.3  # 5.162 req/s with pack core's current params (docstring)
