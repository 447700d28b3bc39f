"""The speed model (planner/perf.py) against hand calculations and measured anchors.

Numbers on the right-hand side come from the calibration files or are worked out in the test from the
formula in the module docstring; none is a copy of the model's own output.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from planner import perf
from planner.app import plan_perf_inputs, plan_with_context
from planner.policy.loader import load_packset
from planner.schemas import Pinned, PlanRequest

ROOT = Path(__file__).resolve().parents[2]
BENCH = json.loads((ROOT / "tests" / "data" / "calibration" / "h100_decode_measured.json").read_text())
H100_BW, H100_BF16 = 3.35e12, 989.5e12  # gpu_catalog/h100-sxm-80gb.yaml
LLAMA8_BYTES = 16_060_514_304  # h100_decode_measured.json weights_bytes (Llama-3.1-8B shape, bf16)
LLAMA8_KV_PER_TOKEN = 32 * 8 * 128 * 2 * 2  # layers x KV heads x head_dim x (K, V) x bf16 = 131,072 B

# A model with no overheads, no compute cost and perfect bandwidth: pure roofline.
ROOFLINE = {"decode_bw_efficiency": 1.0, "quant_bw_factor": 1.0, "compute_mfu": 1e9, "moe_compute_mfu": 1e9,
            "prefill_mfu": 1.0, "decode_step_overhead_ms": 0.0, "decode_layer_overhead_us": 0.0,
            "moe_layer_overhead_us": 0.0, "tp_allreduce_us_per_layer_nvlink": 0.0,
            "tp_allreduce_us_per_layer_pcie": 0.0, "pp_bubble_fraction": 0.0, "pp_send_us_intranode": 0.0,
            "pp_send_us_network": 0.0, "ttft_overhead_ms": 0.0, "chunked_prefill": True}


def llama8(**kw: object) -> perf.PerfInputs:
    base = dict(weights_bytes_per_gpu=LLAMA8_BYTES, kv_bytes_per_token_per_gpu=LLAMA8_KV_PER_TOKEN,
                active_params=8_030_261_248, num_layers=32, num_attention_heads=32, head_dim=128, tp=1, pp=1, dp=1,
                bandwidth_bytes_per_s=H100_BW, peak_flops=H100_BF16, interconnect="none", concurrency=1,
                input_len=1024, output_len=256, max_num_seqs=256, max_num_batched_tokens=8192,
                kv_cache_tokens=400_000, hidden_size=4096)
    base.update(kw)
    return perf.PerfInputs(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pack_params() -> dict:
    """The shipped pack's params as a plan on one H100 sees them (after the baseline rules)."""
    _, ctx = plan_with_context(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100"))
    return dict(ctx.run.params)


def test_batch1_roofline_is_weights_over_bandwidth() -> None:
    # ARCHITECTURE.md: 16.06e9 bytes / 3.35e12 B/s = 4.79 ms, plus 1 token x 1024 ctx x 128 KiB of KV.
    expected_ms = (LLAMA8_BYTES + 1024 * LLAMA8_KV_PER_TOKEN) / H100_BW * 1000
    assert perf.decode_step_ms(llama8(), 1, 1024, ROOFLINE) == pytest.approx(expected_ms, rel=1e-6)
    assert expected_ms == pytest.approx(4.83, abs=0.01)


@pytest.mark.parametrize("row", BENCH["decode"], ids=lambda r: f"b{r['batch']}-ctx{r['ctx']}")
def test_decode_step_matches_h100_measurement(row: dict, pack_params: dict) -> None:
    """Every measured decode step of h100_decode_measured.json within 15% (6.889 ms at batch 1, 23.5 at 256)."""
    predicted = perf.decode_step_ms(llama8(), row["batch"], row["ctx"], pack_params)
    assert predicted == pytest.approx(row["step_ms"], rel=0.15)


def test_decode_turns_compute_bound_as_batch_grows(pack_params: dict) -> None:
    # Measured: 6.89 ms at batch 1 and 23.53 ms at batch 256 (ctx 1024): 3.4x for 256x the tokens.
    t1 = perf.decode_step_ms(llama8(), 1, 1024, pack_params)
    t256 = perf.decode_step_ms(llama8(), 256, 1024, pack_params)
    assert 2.5 < t256 / t1 < 4.5


@pytest.mark.parametrize("row", BENCH["prefill"], ids=lambda r: f"{r['tokens']}-tokens")
def test_prefill_matches_h100_measurement(row: dict, pack_params: dict) -> None:
    """One prefill forward: 2 x 8.03e9 FLOPs per token plus causal attention, within 12% of the measured ms."""
    assert perf.prefill_ms(llama8(), row["tokens"], row["tokens"], pack_params) == pytest.approx(row["ms"], rel=0.12)


def test_prefill_flops_by_hand() -> None:
    # 8192 tokens: (2 x 8.03e9 + 2 x 32 layers x 32 heads x 128 x 8192) x 8192 FLOPs at peak.
    flops = (2 * 8_030_261_248 + 2 * 32 * 32 * 128 * 8192) * 8192
    assert perf.prefill_ms(llama8(), 8192, 8192, ROOFLINE) == pytest.approx(flops / H100_BF16 * 1000, rel=1e-9)


def test_fp8_kv_halves_the_kv_read() -> None:
    ctx = 32768
    bf16 = perf.decode_step_ms(llama8(), 8, ctx, ROOFLINE)
    fp8 = perf.decode_step_ms(llama8(kv_bytes_per_token_per_gpu=LLAMA8_KV_PER_TOKEN // 2), 8, ctx, ROOFLINE)
    kv_ms = 8 * ctx * LLAMA8_KV_PER_TOKEN / H100_BW * 1000  # 8 seqs x 32768 tokens x 128 KiB = 34.4 GB = 10.3 ms
    assert bf16 - fp8 == pytest.approx(kv_ms / 2, rel=1e-6)


def test_moe_reads_only_touched_experts() -> None:
    inp = llama8(num_experts=8, experts_per_token=2, expert_bytes_per_gpu=LLAMA8_BYTES // 2)
    assert perf.touched_expert_fraction(inp, 1) == pytest.approx(0.25)  # 2 of 8
    assert perf.touched_expert_fraction(inp, 2) == pytest.approx(1 - 0.75**2)
    assert perf.touched_expert_fraction(inp, 256) == pytest.approx(1.0)
    dense = LLAMA8_BYTES - LLAMA8_BYTES // 2
    expected = (dense + 0.25 * (LLAMA8_BYTES // 2)) / H100_BW * 1000
    assert perf.decode_step_ms(inp, 1, 0, ROOFLINE) == pytest.approx(expected, rel=1e-6)


def test_tp_allreduce_latency_and_ring_traffic() -> None:
    inp = llama8(tp=2, interconnect="nvlink", link_bandwidth_bytes_per_s=900e9)
    params = {**ROOFLINE, "tp_allreduce_us_per_layer_nvlink": 10.0}
    # 32 layers x 10 us x (2 - 1) peers, plus 2 all-reduces x 32 layers x ring 2(2-1)/2 x 16 x 4096 x 2 B at 450 GB/s.
    ring = 1.0 * 16 * 4096 * 2
    expected = 32 * 10 / 1000 + 2 * 32 * ring / 450e9 * 1000
    assert perf.allreduce_ms(inp, 16, params) == pytest.approx(expected, rel=1e-9)
    pcie = perf.allreduce_ms(replace(inp, interconnect="pcie", link_bandwidth_bytes_per_s=64e9), 16,
                             {**params, "tp_allreduce_us_per_layer_pcie": 40.0})
    assert pcie > perf.allreduce_ms(inp, 16, params)
    tp4 = perf.allreduce_ms(replace(inp, tp=4), 16, params)
    assert tp4 == pytest.approx(32 * 10 * 3 / 1000 + 2 * 32 * (1.5 * 16 * 4096 * 2) / 450e9 * 1000, rel=1e-9)


def test_pipeline_stages_add_up_with_bubble() -> None:
    params = {**ROOFLINE, "pp_bubble_fraction": 0.1, "pp_send_us_intranode": 50.0}
    inp = llama8(pp=2, weights_bytes_per_gpu=LLAMA8_BYTES // 2)
    stage = (LLAMA8_BYTES // 2 + 4 * 1024 * LLAMA8_KV_PER_TOKEN) / H100_BW * 1000  # micro-batch of 8 / 2 = 4
    # Note: kv_bytes_per_token_per_gpu is the whole model's here; the stage split is the caller's job.
    assert perf.decode_step_ms(inp, 8, 1024, params) == pytest.approx(2 * stage * 1.1 + 0.05, rel=1e-6)


def test_concurrency_beyond_kv_is_limited_and_queued(pack_params: dict) -> None:
    # 10,000 KV tokens, 900 in + 200 out: a running sequence holds 900 + 100 tokens on average -> 10 fit.
    inp = llama8(concurrency=64, input_len=900, output_len=200, kv_cache_tokens=10_000)
    r = perf.estimate(inp, pack_params)
    assert r is not None
    assert r.batch_per_replica == 10 and r.effective_concurrency == 10
    unqueued = perf.estimate(replace(inp, concurrency=10), pack_params)
    assert unqueued is not None
    assert r.ttft_ms > 5 * unqueued.ttft_ms  # 54 requests wait for a slot
    assert r.output_tokens_per_s_total == pytest.approx(unqueued.output_tokens_per_s_total, rel=1e-9)
    assert any("wait for a free slot" in a for a in r.assumptions)


def test_max_num_seqs_and_replicas_bound_the_batch() -> None:
    inp = llama8(concurrency=100, max_num_seqs=16, dp=2)
    assert perf.batch_per_replica(inp) == 16
    r = perf.estimate(inp, ROOFLINE | {"ttft_overhead_ms": 0.0})
    assert r is not None and r.effective_concurrency == 32


def test_token_budget_bounds_the_batch_for_long_prompts(pack_params: dict) -> None:
    """A step carries at most max_num_batched_tokens tokens: B decodes plus the B x input/output prompt tokens of
    the sequences replacing them. 8000 in / 100 out with a 2048-token budget: B x 81 <= 2048 -> B = 25, however
    many clients wait (vLLM's scheduler leaves the rest in the queue)."""
    inp = llama8(concurrency=256, input_len=8000, output_len=100, max_num_batched_tokens=2048)
    assert perf.budget_bound(inp) == 25
    assert perf.batch_per_replica(inp) == 25
    # Full steps at the roofline: 25 decodes read the weights and 25 x 8050 tokens of KV; 2048 - 25 = 2023 prompt
    # tokens add their FLOPs (2 x params + causal attention 2 x layers x heads x head_dim x 8000 each).
    decode_ms = (LLAMA8_BYTES + 25 * 8050 * LLAMA8_KV_PER_TOKEN) / H100_BW * 1000
    prompt_ms = 2023 * (2 * 8_030_261_248 + 2 * 32 * 32 * 128 * 8000) / H100_BF16 * 1000
    assert perf.serving_point(inp, ROOFLINE).itl_ms == pytest.approx(decode_ms + prompt_ms, rel=1e-6)
    assert decode_ms + prompt_ms == pytest.approx(49.8, abs=0.1)
    # V0 runs prompts in steps of their own: no token budget, only KV room, 400,000 / (8000 + 100 / 2) = 49.
    assert perf.batch_per_replica(inp, chunked=False) == 49
    r = perf.estimate(inp, pack_params)
    assert r is not None and r.batch_per_replica == 25
    assert any("token budget for 25" in a for a in r.assumptions)
    assert any("every step carries 2048 tokens (25 decodes, 2023 prompt tokens)" in a for a in r.assumptions)
    # Full steps: 2023 prompt tokens a step finish 2023 / 8000 requests' worth of outputs (100 tokens each).
    assert r.output_tokens_per_s_total == pytest.approx(2023 / 8000 * 100 / r.itl_ms * 1000, rel=1e-9)
    assert any("231 request(s) wait" in a for a in r.assumptions)


def test_chunked_prefill_counts_chunks(pack_params: dict) -> None:
    r = perf.serving_point(llama8(input_len=20000, output_len=100, max_num_batched_tokens=8192), pack_params)
    assert (r.chunks, r.chunk) == (3, 8192)  # ceil(20000 / 8192)


def test_measured_itl_at_concurrency_8_long_context(pack_params: dict) -> None:
    """P006 (vLLM blog): Llama-3.1-8B on H100, 8 concurrent 20k/2k requests: ITL 15.18 ms, 450 output tok/s."""
    rows = json.loads((ROOT / "tests" / "data" / "calibration" / "perf_points.json").read_text())["points"]
    p006 = next(r for r in rows if r["id"] == "P006")
    req = PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", concurrency=8, input_len=20000,
                      output_len=2000, vllm_version="0.19.0", pinned=Pinned(kv_cache_dtype="auto"))
    resp, ctx = plan_with_context(req, load_packset(()))
    r = perf.estimate(plan_perf_inputs(resp, ctx), ctx.run.params)
    assert r is not None
    assert r.itl_ms == pytest.approx(p006["metrics"]["itl_ms_median"], rel=0.25)
    assert r.output_tokens_per_s_total == pytest.approx(p006["metrics"]["output_tok_s_total"], rel=0.25)


def test_ranges_are_the_band_around_expected() -> None:
    assert perf.ranges(10.0, 0.8, 1.3) == {"low": 8.0, "expected": 10.0, "high": 13.0}
    assert perf.log_ratio(math.e, 1.0) == pytest.approx(1.0)


def test_unknown_gpu_speed_is_none() -> None:
    assert perf.estimate(llama8(bandwidth_bytes_per_s=None), ROOFLINE) is None


def test_pipeline_shares_other_prompts_across_stages() -> None:
    """With PP each stage does 1/pp of a prompt's FLOPs per cycle: the prompts' share of ITL halves at pp=2."""
    params = {**ROOFLINE, "compute_mfu": 1.0}
    one = llama8(concurrency=9, input_len=1000, output_len=100)
    two = replace(one, pp=2, weights_bytes_per_gpu=LLAMA8_BYTES // 2)
    prompt_ms = perf.prompt_token_ms(one, params) * 1000  # one prompt through the whole model
    extra1 = perf.serving_point(one, params).itl_ms - perf.decode_step_ms(one, 9, 1050, params)
    extra2 = perf.serving_point(two, params).itl_ms - perf.decode_step_ms(two, 9, 1050, params)
    assert extra1 == pytest.approx(8 / 100 * prompt_ms, rel=1e-9)
    assert extra2 == pytest.approx(extra1 / 2, rel=1e-9)
