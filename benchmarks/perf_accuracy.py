#!/usr/bin/env python3
"""Replay measured vLLM serving points through the planner's speed model; report error, coverage and fits.

Usage: python benchmarks/perf_accuracy.py [--json] [--check] [--fit] [--rows] [--held-out]

Data: tests/data/calibration/perf_points.json and h100_decode_measured.json (copies of
shared/calibration/), and gpustack_perf_lab.json (benchmarks/extract_gpustack_lab.py). Every vLLM point
of perf_points.json whose model, GPU and workload the planner can represent is listed in POINTS below
with how its workload and measured values are read from the row; the rest are in EXCLUDED with the
reason. The lab's runs are read by lab_points(): its closed-loop runs join the calibration set, its
bursts and --async-scheduling runs are scored only with --held-out. Each point is planned with the
row's settings pinned (TP, PP, KV dtype, max_model_len, max_num_seqs, max_num_batched_tokens where
stated, the row's vLLM version), then predicted with perf.py.

Metrics, in three classes (the issue's ITL, TTFT and throughput):
  itl   ITL / TPOT median of a serving run, or one decode step of the H100 micro-benchmark
  ttft  TTFT median of a serving run (not for runs that send every prompt at t=0: that is queueing
        over the whole run, not an operating point), or one prefill forward of the micro-benchmark
  tput  total output tokens/s or total tokens/s (prompt-heavy runs); a burst of N prompts at t=0 is
        predicted as ceil(N / batch) waves, and scored only when it fills at least 4 batches (otherwise
        its mean is the drain of the dataset's longest outputs, not an operating point)
Error is predicted/measured - 1. Ranges are the pack's perf_range_* bands.

--fit refits the FITTED params of rules/core/pack.yaml (coordinate descent on the mean |log residual|,
every point weighted equally, no constant fitted to a single row; grids within physical bounds) and the
range bands (5th/95th percentile of measured/predicted, pooled over the fit's own residuals and its
leave-one-GPU-group-out residuals), then evaluates two held-out splits: leave one GPU group out and
leave one source out (fit params and bands on the rest, score the group).
--check exits 1 unless the in-sample targets of issue 6 hold for every class: median |error| <= 10%,
>= 80% of points within 25%, measured inside the printed range for >= 80%.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner import perf  # noqa: E402
from planner.app import plan_perf_inputs, plan_with_context  # noqa: E402
from planner.policy.loader import load_packset  # noqa: E402
from planner.schemas import Pinned, PlanRequest  # noqa: E402

DATA = ROOT / "tests" / "data" / "calibration"
CONFIGS = DATA / "model-configs"
TARGET_MEDIAN, TARGET_WITHIN, TARGET_COVER, WITHIN = 0.10, 0.80, 0.80, 0.25
FIT_PARAMS = ("decode_bw_efficiency", "decode_step_overhead_ms", "compute_mfu", "prefill_mfu",
              "tp_allreduce_us_per_layer_nvlink", "ttft_overhead_ms", "moe_compute_mfu", "decode_layer_overhead_us",
              "moe_layer_overhead_us")
BAND_QUANTILES = (0.05, 0.95)  # about the split-conformal level for 80% with 30-40 residuals
BURST_MIN_WAVES = 4
PCIE_OVER_NVLINK, NETWORK_OVER_NVLINK = 4.0, 10.0  # the pack's stated ratios (planner estimates)
CLASS_OF = {"itl_ms": "itl", "ttft_ms": "ttft", "output_tok_s": "tput", "total_tok_s": "tput", "request_rps": "tput"}
SHAREGPT = "ShareGPT means of the row (total tokens / requests)"


def m(key: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float]:
    """Read row['metrics'][key] (times a scale)."""
    return lambda r: float(r["metrics"][key]) * scale


def d(key: str) -> Callable[[dict[str, Any]], float]:
    return lambda r: float(r["derived"][key])


def little(rate_key: str, ttft_key: str, step_key: str, out: int) -> Callable[[dict[str, Any]], int]:
    """Requests in flight of an open-loop run by Little's law: throughput x (TTFT + output x step)."""
    return lambda r: max(1, round(r["metrics"][rate_key] * (r["metrics"][ttft_key] + out * r["metrics"][step_key])
                                  / 1000))


@dataclass
class Point:
    id: str
    row: str
    model: str
    gpu: str
    group: str  # GPU group for the leave-one-GPU-out split
    source: str  # publication for the leave-one-source-out split
    input_len: int
    output_len: int
    concurrency: int | Callable[[dict[str, Any]], int]
    measured: dict[str, Callable[[dict[str, Any]], float]]
    gpus: int = 1
    vllm: str = "0.11.0"
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    note: str = ""
    kind: str = "serving"  # serving | decode_step | prefill
    prompts: int | None = None  # a finite run: this many prompts sent at t=0 (throughput over the whole drain)
    batch: int = 0
    ctx: int = 0
    pp: int = 1
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    enable_expert_parallel: bool | None = None


L8 = "meta-llama/Llama-3.1-8B-Instruct"
L70 = "meta-llama/Llama-3.1-70B-Instruct"
CI = "vLLM CI nightly benchmarks (late 2024, V0)"
QB = "vLLM recipes benchmark set (P041-P069, v0.10/0.11)"
BLOG = "vLLM blog fp8-kvcache (2026-04)"

POINTS: list[Point] = [
    Point("P001@1k", "P001", L8, "h100-sxm-80gb", "H100", BLOG, 960, 128, 1, {"itl_ms": d("itl_ms_at_ctx_1024")},
          vllm="0.19.0", note="published ITL(ctx) fit at ctx 1024 (input 960 + half of 128 out)"),
    Point("P001@32k", "P001", L8, "h100-sxm-80gb", "H100", BLOG, 32704, 128, 1,
          {"itl_ms": d("itl_ms_at_ctx_32768")}, vllm="0.19.0", note="published ITL(ctx) fit at ctx 32768"),
    Point("P004@1k", "P004", L8, "b200-180gb", "B200", BLOG, 960, 128, 1,
          {"itl_ms": lambda r: m("itl_fit_intercept_ms")(r) + 1024 * m("itl_fit_slope_ms_per_ctx_token")(r)},
          vllm="0.19.0", note="published ITL(ctx) fit evaluated at ctx 1024; B200 version not restated"),
    Point("P006", "P006", L8, "h100-sxm-80gb", "H100", BLOG, 20000, 2000, 8,
          {"itl_ms": m("itl_ms_median"), "ttft_ms": m("ttft_ms_median"), "output_tok_s": m("output_tok_s_total")},
          vllm="0.19.0", note="lengths ~20k/~2k (+-15% in the source)"),
    Point("P019", "P019", L8, "h100-sxm-80gb", "H100", CI, 32, 128, 8, {"itl_ms": m("e2e_latency_ms_median", 1 / 128)},
          vllm="0.6.4", note="offline latency run, batch 8: e2e / 128 steps (prefill of 8x32 tokens ignored)"),
    Point("P021", "P021", L70, "a100-sxm-80gb", "A100", CI, 32, 128, 8, {"itl_ms": m("e2e_latency_ms_median", 1 / 128)},
          gpus=4, vllm="0.6.4", max_model_len=8192, note="Llama-3-70B (the 3.1 architecture at 8k); e2e / 128"),
    Point("P024", "P024", L8, "h200-sxm-141gb", "H200", CI, 32, 128, 8, {"itl_ms": m("e2e_latency_ms_median", 1 / 128)},
          vllm="0.6.4", note="e2e / 128 steps"),
    Point("P026", "P026", "mistralai/Mixtral-8x7B-v0.1", "h200-sxm-141gb", "H200", CI, 32, 128, 8,
          {"itl_ms": m("e2e_latency_ms_median", 1 / 128)}, gpus=2, vllm="0.6.4", note="Mixtral-8x7B-Instruct, TP2"),
    Point("P036", "P036", L70, "h200-sxm-141gb", "H200", CI, 217, 200,
          little("request_throughput_rps", "ttft_ms_mean", "itl_ms_mean", 200),
          {"itl_ms": m("itl_ms_median"), "ttft_ms": m("ttft_ms_median")}, gpus=4, vllm="0.6.4", max_model_len=8192,
          note="ShareGPT at 1 req/s: concurrency by Little's law; lengths from the 1000-prompt ShareGPT rows"),
    Point("P039", "P039", "meta-llama/Llama-3.3-70B-Instruct", "a100-pcie-80gb", "A100", "community (Azure gist)",
          213, 214, little("request_throughput_rps", "ttft_ms_mean", "tpot_ms_mean", 214),
          {"itl_ms": m("tpot_ms_median"), "ttft_ms": m("ttft_ms_median"), "output_tok_s": m("output_tok_s_total")},
          gpus=4, vllm="0.6.4", max_model_len=8192,
          note="ShareGPT at 4 req/s on Azure NC A100 v4 (PCIe); lengths " + SHAREGPT + "; Little's law"),
    Point("P041", "P041", "Qwen/Qwen3-8B", "h100-sxm-80gb", "H100", QB, 233, 221, 4,
          {"itl_ms": m("tpot_ms_median"), "ttft_ms": m("ttft_ms_median"), "output_tok_s": m("output_tok_s_total")},
          note="ShareGPT, max-concurrency 4; lengths " + SHAREGPT),
    Point("P044", "P044", "Qwen/Qwen3-32B", "h100-sxm-80gb", "H100", QB, 217, 201, 1000,
          {"itl_ms": m("tpot_ms_median"), "output_tok_s": m("output_tok_s_total")},
          prompts=1000, note="1000 ShareGPT prompts at t=0: KV-bound batch; TTFT is run-long queueing (not scored)"),
    Point("P049", "P049", "Qwen/Qwen3-32B", "a100-sxm-80gb", "A100", QB, 217, 201, 1000,
          {"itl_ms": m("tpot_ms_median"), "output_tok_s": m("output_tok_s_total")}, max_model_len=32768,
          prompts=1000, note="1000 ShareGPT prompts at t=0, --max-model-len 32768"),
    Point("P051", "P051", str(CONFIGS / "Qwen3-14B"), "h100-sxm-80gb", "H100", QB, 217, 202, 1000,
          {"itl_ms": m("tpot_ms_median"), "output_tok_s": m("output_tok_s_total")},
          prompts=1000, note="1000 ShareGPT prompts at t=0"),
    Point("P054", "P054", str(CONFIGS / "Qwen3-14B"), "a100-sxm-80gb", "A100", QB, 32000, 99, 100,
          {"itl_ms": m("tpot_ms_median"), "total_tok_s": m("total_tok_s")},
          prompts=100, note="100 random 32000/100 prompts at t=0: prefill-bound"),
    Point("P056", "P056", "openai/gpt-oss-20b", "h100-sxm-80gb", "H100", QB, 32000, 94, 100,
          {"itl_ms": m("tpot_ms_median"), "total_tok_s": m("total_tok_s")},
          prompts=100, note="100 random 32000/100 prompts at t=0 (93.5 output tokens on average): prefill-bound"),
    Point("P059", "P059", "openai/gpt-oss-120b", "h100-sxm-80gb", "H100", QB, 215, 196, 1000,
          {"itl_ms": m("tpot_ms_median"), "output_tok_s": m("output_tok_s_total")}, max_model_len=32768,
          prompts=1000, note="v0.10.2 (planned with the 0.11 accounting); 1000 ShareGPT prompts at t=0"),
    Point("P061", "P061", "openai/gpt-oss-120b", "h100-sxm-80gb", "H100", QB, 230, 217, 4,
          {"itl_ms": m("tpot_ms_median"), "ttft_ms": m("ttft_ms_median"), "output_tok_s": m("output_tok_s_total")},
          max_model_len=32768, note="v0.10.2; ShareGPT, max-concurrency 4"),
    Point("P064", "P064", "Qwen/Qwen3-235B-A22B", "h100-sxm-80gb", "H100", QB, 216, 197, 1000,
          {"itl_ms": m("tpot_ms_median"), "output_tok_s": m("output_tok_s_total")}, gpus=8,
          prompts=984, note="Qwen3-235B-A22B-Instruct-2507 (same architecture), TP8, 1000 prompts at t=0"),
    Point("P066", "P066", "Qwen/Qwen3-235B-A22B", "a100-sxm-80gb", "A100", QB, 217, 196, 1000,
          {"itl_ms": m("tpot_ms_median"), "output_tok_s": m("output_tok_s_total")}, gpus=8,
          prompts=1000, note="TP8 on A100, 1000 prompts at t=0"),
    Point("P069", "P069", "deepseek-ai/DeepSeek-R1", "h200-sxm-141gb", "H200", QB, 228, 213, 4,
          {"itl_ms": m("tpot_ms_median"), "ttft_ms": m("ttft_ms_median"), "output_tok_s": m("output_tok_s_total")},
          gpus=8, note="DeepSeek-R1-0528 FP8, TP8, max-concurrency 4"),
    Point("P076", "P076", L8, "h100-sxm-80gb", "H100", "InferenceBench", 128, 128, 1, {"itl_ms": m("tpot_ms_p50")},
          vllm="0.20.0", note="v0.21, batch 1, 'chatbot-short' lengths not stated (128/128 assumed; ITL only)"),
    Point("P079", "P079", str(CONFIGS / "Qwen3-0.6B"), "h100-sxm-80gb", "H100", "community (Qwen3-0.6B)", 512, 128,
          little("request_throughput_rps", "ttft_ms", "tpot_ms", 127),
          {"itl_ms": m("tpot_ms"), "ttft_ms": m("ttft_ms")},
          vllm="0.19.0", note="16 req/s: concurrency by Little's law; per-step overhead dominates"),
    Point("P081", "P081", "Qwen/Qwen3-32B", "h100-nvl-94gb", "H100", "community (H100 NVL)", 217, 200, 32,
          {"output_tok_s": m("output_tok_s_total")}, vllm="0.8.5", max_num_seqs=32,
          note="--max-num-seqs 32 caps the batch; TTFT is queueing (not scored)"),
    Point("P084", "P084", "mistralai/Mistral-7B-Instruct-v0.3", "rtx-4090", "RTX 4090", "community (RTX 4090)",
          256, 128, 4, {"output_tok_s": m("output_tok_s_total"), "ttft_ms": m("ttft_ms_median")}, vllm="0.8.5",
          max_model_len=8192, note="trust low-medium: version/dtype not stated, may include request gaps"),
]

EXCLUDED = {
    "P009": "Nemotron-3-Super-120B (hybrid Mamba/MoE, NVFP4) is not an architecture the planner's catalog holds",
    "P011": "GB300 is not in gpu_catalog and DeepSeek-V3.2 (sparse attention) is not modelled",
    "P014": "DeepSeek-V3.2 (sparse attention) on B300: precision and lengths not stated, MTP likely",
    "P016": "Intel Arc Pro B60 (XPU) is not in gpu_catalog",
    "P029": "offline ShareGPT drain (200 prompts at once, dataset output lengths): requests/s of a draining batch",
    "P031": "offline ShareGPT drain (200 prompts at once, dataset output lengths): requests/s of a draining batch",
    "P034": "offline ShareGPT drain (200 prompts at once, dataset output lengths): requests/s of a draining batch",
    "P071": "GLM-4.6 (glm4_moe) is not in the planner's model catalog",
    "P074": "GLM-4.5-Air (glm4_moe) is not in the planner's model catalog",
    "P086": "ISL/OSL not captured and 'throughput' undefined (charted by an LLM from raw data)",
    "P131": "disaggregated prefill/decode deployment across 16 GB200s: not a single vLLM instance",
}


def micro_points(bench: dict[str, Any]) -> list[Point]:
    """The H100 micro-benchmark: one Llama-3.1-8B-shaped bf16 decode step / prefill forward (not vLLM serving)."""
    src = "h100_decode_measured.json (micro-benchmark)"
    out = [Point(f"H100-decode b{r['batch']} ctx{r['ctx']}", "h100_decode", L8, "h100-sxm-80gb", "H100", src,
                 r["ctx"], 1, r["batch"], {"itl_ms": (lambda v: lambda _: v)(r["step_ms"])}, vllm="0.19.0",
                 kind="decode_step", batch=r["batch"], ctx=r["ctx"], note="CUDA-graph decode step, custom loop")
           for r in bench["decode"]]
    out += [Point(f"H100-prefill {r['tokens']}", "h100_decode", L8, "h100-sxm-80gb", "H100", src, r["tokens"], 1, 1,
                  {"ttft_ms": (lambda v: lambda _: v)(r["ms"])}, vllm="0.19.0", kind="prefill",
                  batch=r["tokens"], note="one prefill forward")
            for r in bench["prefill"]]
    return out


@dataclass
class Prepared:
    point: Point
    inputs: perf.PerfInputs
    params: dict[str, Any]  # the pack's params after the baseline rules for this point
    measured: dict[str, float]
    concurrency: int
    notes: list[str] = field(default_factory=list)


def prepare(points: list[Point], rows: dict[str, dict[str, Any]]) -> list[Prepared]:
    """Plan every point once (memory, KV capacity, the configuration vLLM would run)."""
    packset = load_packset(())
    out = []
    for p in points:
        row = rows.get(p.row, {})
        conc = p.concurrency(row) if callable(p.concurrency) else p.concurrency
        req = PlanRequest(model=p.model, gpu=p.gpu, gpus=p.gpus, concurrency=conc, input_len=p.input_len,
                          output_len=p.output_len, vllm_version=p.vllm,
                          pinned=Pinned(tensor_parallel_size=p.gpus // p.pp, pipeline_parallel_size=p.pp,
                                        kv_cache_dtype="auto", max_model_len=p.max_model_len,
                                        max_num_seqs=p.max_num_seqs, max_num_batched_tokens=p.max_num_batched_tokens,
                                        gpu_memory_utilization=p.gpu_memory_utilization,
                                        enable_expert_parallel=p.enable_expert_parallel))
        resp, ctx = plan_with_context(req, packset)
        inp = plan_perf_inputs(resp, ctx)
        out.append(Prepared(point=p, inputs=inp, params=dict(ctx.run.params), concurrency=conc,
                            measured={k: f(row) for k, f in p.measured.items()}))
    return out


def predict(pp: Prepared, overrides: dict[str, Any]) -> dict[str, float]:
    """The model's value of each measured metric of a point, under the pack params plus `overrides`."""
    params = {**pp.params, **overrides}
    p, inp = pp.point, pp.inputs
    if p.kind == "decode_step":
        return {"itl_ms": perf.decode_step_ms(inp, p.batch, p.ctx, params)}
    if p.kind == "prefill":
        return {"ttft_ms": perf.prefill_ms(inp, p.batch, p.batch, params)}
    r = perf.estimate(inp, params)
    assert r is not None
    out_tps = r.output_tokens_per_s_total
    if p.prompts:  # N prompts at t=0 drain through `running` slots in ceil(N / running) waves
        running = r.effective_concurrency
        out_tps *= p.prompts / (math.ceil(p.prompts / running) * running)
    return {"itl_ms": r.itl_ms, "ttft_ms": r.ttft_ms, "output_tok_s": out_tps,
            "total_tok_s": out_tps * (p.input_len + p.output_len) / p.output_len,
            "request_rps": out_tps / p.output_len}


def drain_dominated(pp: Prepared) -> bool:
    """A burst of N prompts at t=0 that fills fewer than BURST_MIN_WAVES batches: its mean throughput is mostly
    the drain of the dataset's longest outputs, not an operating point (its ITL is still scored)."""
    p = pp.point
    batch = perf.batch_per_replica(pp.inputs, bool(pp.params["chunked_prefill"]))
    return bool(p.prompts) and p.prompts < BURST_MIN_WAVES * batch * pp.inputs.dp


def band(params: dict[str, Any], cls: str) -> tuple[float, float]:
    return float(params[f"perf_range_{cls}_low"]), float(params[f"perf_range_{cls}_high"])


def score(prepared: list[Prepared], overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per (point, metric): measured, predicted, error, and whether the printed range covers it."""
    recs = []
    for pp in prepared:
        pred = predict(pp, overrides)
        params = {**pp.params, **overrides}
        for k, meas in pp.measured.items():
            cls = CLASS_OF[k]
            if cls == "tput" and drain_dominated(pp):
                continue
            lo, hi = band(params, cls)
            value = pred[k]
            recs.append({"id": pp.point.id, "row": pp.point.row, "group": pp.point.group, "source": pp.point.source,
                         "metric": k, "class": cls, "measured": round(meas, 4), "predicted": round(value, 4),
                         "error": value / meas - 1, "low": value * lo, "high": value * hi,
                         "covered": value * lo <= meas <= value * hi, "concurrency": pp.concurrency,
                         "kind": "burst (every prompt at t=0)" if pp.point.prompts else "concurrency-capped",
                         "note": pp.point.note})
    return recs


def summary(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for cls in ("itl", "ttft", "tput"):
        rs = [r for r in recs if r["class"] == cls]
        if not rs:
            continue
        errs = [abs(r["error"]) for r in rs]
        out[cls] = {"n": len(rs), "median_abs_error": statistics.median(errs),
                    "within_25pct": sum(e <= WITHIN for e in errs) / len(rs),
                    "coverage": sum(r["covered"] for r in rs) / len(rs),
                    "median_range_width": statistics.median((r["high"] - r["low"]) / r["predicted"] for r in rs)}
    return out


def meets(summ: dict[str, dict[str, Any]]) -> list[str]:
    """The issue-6 targets a summary misses (empty when all hold)."""
    bad = []
    for cls, s in summ.items():
        if s["median_abs_error"] > TARGET_MEDIAN:
            bad.append(f"{cls}: median |error| {s['median_abs_error']:.1%} > {TARGET_MEDIAN:.0%}")
        if s["within_25pct"] < TARGET_WITHIN:
            bad.append(f"{cls}: {s['within_25pct']:.0%} within 25% < {TARGET_WITHIN:.0%}")
        if s["coverage"] < TARGET_COVER:
            bad.append(f"{cls}: range coverage {s['coverage']:.0%} < {TARGET_COVER:.0%}")
    return bad


# ------------------------------------------------------------------------------------------- GPUStack lab

LAB_FILE = "gpustack_perf_lab.json"
LAB_GPUS = {"h100": "h100-sxm-80gb", "a100": "a100-sxm-80gb", "h200": "h200-sxm-141gb"}
# Checkpoints the lab serves -> the config the planner reads (same architecture; instruct/2507/0528 are re-trains).
LAB_MODELS = {
    "Qwen/Qwen3-8B": "Qwen/Qwen3-8B", "Qwen/Qwen3-14B": str(CONFIGS / "Qwen3-14B"), "Qwen/Qwen3-32B": "Qwen/Qwen3-32B",
    "Qwen/Qwen3-235B-A22B-Instruct-2507": "Qwen/Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": str(ROOT / "examples" / "models" / "Qwen3-235B-A22B-FP8"),
    "openai/gpt-oss-20b": "openai/gpt-oss-20b", "openai/gpt-oss-120b": "openai/gpt-oss-120b",
    "deepseek-ai/DeepSeek-R1-0528": "deepseek-ai/DeepSeek-R1",
}
LAB_FLAGS = {"-tp": "tp", "--tensor-parallel-size": "tp", "-pp": "pp", "--pipeline-parallel-size": "pp",
             "--max-model-len": "max_model_len", "--max-num-batched-tokens": "max_num_batched_tokens",
             "--gpu-memory-utilization": "gpu_memory_utilization", "--max-num-seqs": "max_num_seqs"}
LAB_SWITCHES = {"--enable-expert-parallel": "enable_expert_parallel", "--async-scheduling": "async_scheduling"}
LAB_IGNORED = {"--tokenizer-mode", "--reasoning-parser", "--tool-call-parser"}  # no effect on speed modelled


def lab_flags(run: dict[str, Any]) -> dict[str, Any]:
    """The serving flags of a lab run; a label that is itself a flag ('--max-num-batched-tokens 4096') overrides."""
    words = run["serve_command"].split()
    words = words[words.index("serve") + 1:]
    flags: dict[str, Any] = {"model": words[0], "env": [w for w in run["serve_command"].split() if "=" in w
                                                         and w.split("=")[0].isupper()]}
    rest = words[1:] + (run["label"].split() if run["label"].startswith("--") else [])
    i = 0
    while i < len(rest):
        w = rest[i]
        if w in LAB_FLAGS:
            flags[LAB_FLAGS[w]] = float(rest[i + 1]) if "." in rest[i + 1] else int(rest[i + 1])
            i += 2
        elif w in LAB_SWITCHES:
            flags[LAB_SWITCHES[w]] = True
            i += 1
        elif w in LAB_IGNORED:
            i += 2
        else:
            flags.setdefault("unknown", []).append(w)
            i += 1
    return flags


def _lab_skip_reason(run: dict[str, Any], f: dict[str, Any], gpu_key: str, seen: set[tuple[Any, Any]]) -> str:
    """Why a lab run cannot be replayed as measured ('' when it can)."""
    met, page_model = run["metrics"], run["page"].split("/")[-2]
    if (met.get("output_tok_s_total"), met.get("total_tok_s")) in seen:
        return "in the calibration set (perf_points.json)"
    if gpu_key not in LAB_GPUS:
        return f"not an NVIDIA GPU in gpu_catalog ({gpu_key})"
    if f["model"] not in LAB_MODELS:
        return f"{f['model']} is not in the planner's catalog (or no config is bundled for it)"
    if page_model not in f["model"].lower():
        return f"serving command names {f['model']} on the {page_model} page"
    if f.get("unknown"):
        return f"flags the model does not represent: {' '.join(f['unknown'])}"
    if f["env"]:
        return f"environment variables the model does not represent: {' '.join(f['env'])}"
    return ""


def lab_points(doc: dict[str, Any], calibration_rows: list[dict[str, Any]]
               ) -> tuple[list[Point], list[Point], dict[str, str], dict[str, dict[str, Any]]]:
    """The lab's vLLM runs the planner can replay, split in two, the others with the reason, and the rows by id.

    Calibration: closed-loop runs (--max-concurrency C) without --async-scheduling: the operating point a
    plan describes, under the settings the model represents. Held out (never fitted): bursts (every prompt
    at t=0) and runs with --async-scheduling, which overlaps the scheduler with the GPU and is not modelled.
    A run already in perf_points.json (same throughput numbers) is skipped."""
    seen = {(r["metrics"].get("output_tok_s_total"), r["metrics"].get("total_tok_s")) for r in calibration_rows}
    calibrate, held, excluded, rows = [], [], {}, {}
    for run in doc["runs"]:
        rid, f = run["id"], lab_flags(run)
        gpu_key = run["page"].split("/")[-1].removesuffix(".md").removesuffix("-latency")
        if why := _lab_skip_reason(run, f, gpu_key, seen):
            excluded[rid] = why
            continue
        n, cap = run["num_prompts"], run["max_concurrency"]
        tp, pp = f.get("tp", 1), f.get("pp", 1)
        rows[rid] = run
        measured: dict[str, Callable[[dict[str, Any]], float]] = {"itl_ms": m("tpot_ms_median"),
                                                                    "output_tok_s": m("output_tok_s_total")}
        if cap:
            measured["ttft_ms"] = m("ttft_ms_median")
        notes = [f"{'random' if run['label'].lower().startswith('random') else 'ShareGPT'} {n} prompts"
                 + (f" at max-concurrency {cap}" if cap else " at t=0"), f"vLLM {run['vllm_version']}"]
        notes += [k.replace("_", "-") for k in ("async_scheduling", "enable_expert_parallel") if f.get(k)]
        (calibrate if cap and not f.get("async_scheduling") else held).append(Point(
            rid, rid, LAB_MODELS[f["model"]], LAB_GPUS[gpu_key], gpu_key.upper(), QB,
            round(run["input_len_mean"]), max(1, round(run["output_len_mean"])), cap or n, measured, gpus=tp * pp,
            vllm=run["vllm_version"], max_model_len=f.get("max_model_len"), max_num_seqs=f.get("max_num_seqs"),
            prompts=None if cap else n, note="; ".join(notes), pp=pp,
            max_num_batched_tokens=f.get("max_num_batched_tokens"),
            gpu_memory_utilization=f.get("gpu_memory_utilization"),
            enable_expert_parallel=f.get("enable_expert_parallel")))
    return calibrate, held, excluded, rows


def _lab(data_dir: Path) -> tuple[list[Point], list[Point], dict[str, str], dict[str, dict[str, Any]]]:
    calibration = json.loads((data_dir / "perf_points.json").read_text())["points"]
    return lab_points(json.loads((data_dir / LAB_FILE).read_text()), calibration)


def load_held_out(data_dir: Path = DATA) -> tuple[list[Prepared], dict[str, str]]:
    """The lab runs no fit sees, planned, and the lab runs that cannot be replayed with the reason."""
    _, held, excluded, rows = _lab(data_dir)
    return prepare(held, rows), excluded


# ------------------------------------------------------------------------------------------- fitting


def _loss(prepared: list[Prepared], overrides: dict[str, Any]) -> float:
    """Mean |log(predicted/measured)| per point (each point's metrics averaged, so no row counts twice)."""
    total = 0.0
    for pp in prepared:
        pred = predict(pp, overrides)
        total += statistics.fmean(abs(math.log(pred[k] / v)) for k, v in pp.measured.items())
    return total / len(prepared)


def _grid(lo: float, hi: float, n: int = 13) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


# Grids span what is physically possible: no kernel streams faster than the measured copy bandwidth (2.97 of
# 3.35 TB/s, h100_decode_measured.json) or multiplies faster than the measured matmul peak (767 of 989 TFLOP/s).
GRIDS = {"decode_bw_efficiency": _grid(0.4, 0.89), "decode_step_overhead_ms": _grid(0.0, 3.0),
         "compute_mfu": _grid(0.1, 0.78), "prefill_mfu": _grid(0.2, 0.78),
         "tp_allreduce_us_per_layer_nvlink": _grid(0.0, 60.0), "ttft_overhead_ms": _grid(0.0, 80.0),
         "moe_compute_mfu": _grid(0.05, 0.78), "decode_layer_overhead_us": _grid(0.0, 100.0),
         "moe_layer_overhead_us": _grid(0.0, 300.0)}


def _search(prepared: list[Prepared], cur: dict[str, Any], k: str) -> float:
    """Best value of param k on its grid, refined once on a finer grid around the coarse best."""
    coarse = GRIDS[k]
    best = min(coarse, key=lambda v: _loss(prepared, {**cur, k: v}))
    step = coarse[1] - coarse[0]
    fine = [v for v in _grid(best - step, best + step, 9) if coarse[0] <= v <= coarse[-1]]
    return min(fine, key=lambda v: _loss(prepared, {**cur, k: v}))


def fit_params(prepared: list[Prepared], start: dict[str, Any]) -> dict[str, Any]:
    """Coordinate descent of FIT_PARAMS on the mean |log residual| (grids within physical bounds)."""
    cur = {k: start[k] for k in FIT_PARAMS}
    for _ in range(3):
        for k in FIT_PARAMS:
            cur[k] = _search(prepared, cur, k)
    return cur


def cv_records(prepared: list[Prepared], start: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Leave one group out: each group scored with params fitted on the other groups (bands not yet applied)."""
    recs = []
    for g in sorted({getattr(pp.point, key) for pp in prepared}):
        train = [pp for pp in prepared if getattr(pp.point, key) != g]
        test = [pp for pp in prepared if getattr(pp.point, key) == g]
        recs += score(test, fit_params(train, start))
    return recs


def bands(recs: list[dict[str, Any]]) -> dict[str, float]:
    """perf_range_* from the measured/predicted ratios of out-of-sample predictions, per metric class."""
    out = {}
    for cls in ("itl", "ttft", "tput"):
        ratios = sorted(r["measured"] / r["predicted"] for r in recs if r["class"] == cls)
        if ratios:
            lo, hi = (_quantile(ratios, q) for q in BAND_QUANTILES)
            out[f"perf_range_{cls}_low"] = round(min(1.0, lo), 3)
            out[f"perf_range_{cls}_high"] = round(max(1.0, hi), 3)
    return out


def fit(prepared: list[Prepared], start: dict[str, Any]) -> dict[str, Any]:
    """The pack's FITTED values: params fitted on every point; ranges from the pooled residuals of that fit
    and of leave-one-GPU-group-out fits, so that a band also reflects the error on a GPU the fit has not seen."""
    params = fit_params(prepared, start)
    # One PCIe TP point (P039) and no cross-node one: those latencies are fixed multiples of NVLink's, not fitted.
    params["tp_allreduce_us_per_layer_pcie"] = PCIE_OVER_NVLINK * params["tp_allreduce_us_per_layer_nvlink"]
    params["tp_allreduce_us_per_layer_network"] = NETWORK_OVER_NVLINK * params["tp_allreduce_us_per_layer_nvlink"]
    for fabric in ("infinity_fabric", "nvlink_c2c"):  # other GPU fabrics, no points: NVLink's latency
        params[f"tp_allreduce_us_per_layer_{fabric}"] = params["tp_allreduce_us_per_layer_nvlink"]
    params.update(bands(score(prepared, params) + cv_records(prepared, {**start, **params}, "group")))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in params.items()}


def _quantile(xs: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values."""
    pos = q * (len(xs) - 1)
    i = int(pos)
    return xs[i] if i + 1 >= len(xs) else xs[i] + (xs[i + 1] - xs[i]) * (pos - i)


def held_out(prepared: list[Prepared], start: dict[str, Any], key: str, nested: bool = True
             ) -> list[dict[str, Any]]:
    """Leave one group out: fit on the other groups (params and, nested, bands from their own
    leave-one-GPU-out residuals), score the group with that fit."""
    recs = []
    for g in sorted({getattr(pp.point, key) for pp in prepared}):
        train = [pp for pp in prepared if getattr(pp.point, key) != g]
        test = [pp for pp in prepared if getattr(pp.point, key) == g]
        params = fit(train, start) if nested else fit_params(train, start)
        recs += score(test, params)
    return recs


# ------------------------------------------------------------------------------------------- main


def load(data_dir: Path = DATA) -> list[Prepared]:
    """The calibration set: POINTS, the H100 micro-benchmark and the lab's closed-loop runs, planned."""
    rows = {r["id"]: r for r in json.loads((data_dir / "perf_points.json").read_text())["points"]}
    bench = json.loads((data_dir / "h100_decode_measured.json").read_text())
    lab, _, _, lab_rows = _lab(data_dir)
    return prepare(POINTS + micro_points(bench) + lab, {**rows, **lab_rows})


def _print_summary(title: str, summ: dict[str, dict[str, Any]]) -> None:
    print(f"{title}:")
    for cls, s in summ.items():
        print(f"  {cls:5s} n={s['n']:2d}  median |err| {s['median_abs_error']:6.1%}  within 25% "
              f"{s['within_25pct']:5.0%}  in range {s['coverage']:5.0%}  "
              f"median range width {s['median_range_width']:.0%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print every record and the summaries as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the in-sample targets hold")
    ap.add_argument("--fit", action="store_true", help="refit the FITTED params and report held-out error")
    ap.add_argument("--rows", action="store_true", help="print every point, not only the worst five")
    ap.add_argument("--held-out", action="store_true",
                    help="also score the GPUStack lab runs no fit sees (bursts, --async-scheduling)")
    ap.add_argument("--params", default="{}", help="JSON object of param overrides to score with (exploration)")
    args = ap.parse_args(argv)
    prepared = load()
    overrides = json.loads(args.params)
    recs = score(prepared, overrides)
    summ = summary(recs)
    result: dict[str, Any] = {"in_sample": summ, "records": recs, "excluded": EXCLUDED}
    if args.held_out:
        held, lab_excluded = load_held_out()
        held_recs = score(held, overrides)
        result["held_out_lab"] = summary(held_recs)
        result["held_out_lab_by_kind"] = {kind: summary([r for r in held_recs if r["kind"] == kind])
                                          for kind in sorted({r["kind"] for r in held_recs})}
        result["held_out_lab_records"] = held_recs
        result["lab_excluded"] = lab_excluded
    if args.fit:
        start = {**prepared[0].params, **overrides}
        result["fit"] = fit(prepared, start)
        result["held_out_gpu"] = summary(held_out(prepared, start, "group"))
        result["held_out_source"] = summary(held_out(prepared, start, "source"))
    worst = sorted(recs, key=lambda r: -abs(math.log(r["predicted"] / r["measured"])))[:5]
    result["worst"] = worst
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        shown = sorted(recs, key=lambda r: (r["id"], r["metric"])) if args.rows else worst
        print(f"{'point':26s} {'metric':13s} {'measured':>10s} {'predicted':>10s} {'error':>7s}  range")
        for r in shown:
            print(f"{r['id']:26s} {r['metric']:13s} {r['measured']:10.2f} {r['predicted']:10.2f} {r['error']:+7.1%}  "
                  f"[{r['low']:.2f}, {r['high']:.2f}]{'' if r['covered'] else ' MISS'}  {r['note']}")
        _print_summary(f"in-sample, pack params ({len(prepared)} points, {len(recs)} metrics)", summ)
        if args.fit:
            print("fit (all points):", json.dumps(result["fit"]))
            _print_summary("held out, leave one GPU group out", result["held_out_gpu"])
            _print_summary("held out, leave one source out", result["held_out_source"])
        if args.held_out:
            _print_summary(f"held out, GPUStack lab runs no fit sees ({len(held)} runs)", result["held_out_lab"])
            for kind, summ_k in result["held_out_lab_by_kind"].items():
                _print_summary(f"  of which {kind}", summ_k)
            print(f"lab runs not replayed: {len(lab_excluded)} (reasons with --json)")
        print(f"excluded rows: {', '.join(EXCLUDED)} (reasons with --json)")
    if args.check:
        bad = meets(summ)
        for b in bad:
            print(f"target missed: {b}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
