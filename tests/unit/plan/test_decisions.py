"""Decisions an expert would make, end to end through plan(): the headline layout when nothing fits, the fixes,
GPUs in an error state, and the lock-stepped MoE speed model. Expected values are worked out in each test."""

from __future__ import annotations

from pathlib import Path

from planner import perf
from planner.app import plan
from planner.schemas import PlanRequest
from planner.units import GiB

ROOT = Path(__file__).resolve().parents[3]


def test_405b_bf16_on_8xh100_shows_tp8_and_offers_fp8_weights_there() -> None:
    """405B in bf16 is ~756 GiB: no layout of 8 x H100 (72.8 GiB budget each) holds it. The headline is one
    replica over the node (TP8, the smallest per-GPU need), and FP8 weights at TP8 (405e9 x 1 B / 8 = 47 GiB per
    GPU) is the fix everyone runs; FP8 KV cannot help weights that do not fit and is not bundled in."""
    p = plan(PlanRequest(model="meta-llama/Llama-3.1-405B", gpu="H100", gpus=8))
    assert not p.feasible
    assert (p.config.tensor_parallel_size, p.config.pipeline_parallel_size, p.config.data_parallel_size) == (8, 1, 1)
    fp8 = next(f for f in p.fixes if "--quantization fp8" in f.flags)
    assert fp8.flags == "--tp 8 --quantization fp8"
    assert 405e9 / 8 / GiB * 0.95 < fp8.weights_bytes / GiB < 405e9 / 8 / GiB * 1.2
    assert not any("--kv-cache-dtype" in f.flags for f in p.fixes)


def test_8b_on_one_t4_offers_two_gpus_with_a_shorter_context_and_no_fp8() -> None:
    """8B in fp16 (a T4 has no bf16) is 14.96 GiB of weights over a 13.4 GiB budget. Two T4s at TP2 hold the
    weights but not a full 131,072-token sequence, so the fix is two GPUs with a shorter context (at least the
    8,192-token floor); four GPUs hold the full context. FP8 weights are not offered below compute capability 8.0."""
    p = plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="T4"))
    assert not p.feasible
    flags = [f.flags for f in p.fixes]
    two = next(f for f in flags if f.startswith("--gpus 2 --tp 2 --max-model-len "))
    assert int(two.rsplit(" ", 1)[1]) >= 8192
    assert "--gpus 4 --tp 4" in flags
    assert not any("--quantization fp8" in f for f in flags)


def test_gpus_in_err_state_are_never_used() -> None:
    """The capture's INDEX.md: GPUs 2 and 3 of the 4 x A100 node show ERR!; the plan uses GPUs 0 and 1 only."""
    capture = ROOT / "tests" / "data" / "nvidia-smi" / "4xA100-80GB-PCIe_smi_595_two-GPUs-ERR.txt"
    p = plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", from_file=str(capture)))
    assert p.hardware.gpu_count == 2
    assert p.hardware.visible_devices == "0,1"
    assert any("ERR!" in n for n in p.hardware.notes)


def _moe_inputs(**kw: object) -> perf.PerfInputs:
    base = dict(weights_bytes_per_gpu=0, kv_bytes_per_token_per_gpu=0, active_params=0, num_layers=61,
                num_attention_heads=128, head_dim=128, tp=1, pp=1, dp=8, bandwidth_bytes_per_s=None, peak_flops=None,
                interconnect="nvlink", concurrency=1, input_len=1, output_len=1, max_num_seqs=1,
                max_num_batched_tokens=1, kv_cache_tokens=1, num_moe_layers=58, num_experts=256, experts_per_token=8)
    base.update(kw)
    return perf.PerfInputs(**base)  # type: ignore[arg-type]


def test_lockstepped_dp_ranks_pay_a_collective_per_moe_layer() -> None:
    """DeepSeek-R1 shape (61 layers, 58 MoE) at TP1 x DP8 in one engine: each MoE layer's dispatch/combine spans
    8 ranks, so the latency term is 10 us x 7 peers x 58 layers = 4.06 ms; independent replicas (no lock-step)
    pay nothing at TP1."""
    params = {"tp_allreduce_us_per_layer_nvlink": 10.0, "tp_allreduce_us_per_layer_pcie": 99.0}
    assert abs(perf.allreduce_ms(_moe_inputs(moe_lockstep=True), 1, params) - 10 * 7 * 58 / 1000) < 1e-9
    assert perf.allreduce_ms(_moe_inputs(moe_lockstep=False), 1, params) == 0.0
    # TP2 x DP4: dense layers all-reduce over 2 (1 peer), MoE layers over 8 (7 peers)
    tp2 = _moe_inputs(tp=2, dp=4, moe_lockstep=True)
    assert abs(perf.allreduce_ms(tp2, 1, params) - 10 * (1 * 3 + 7 * 58) / 1000) < 1e-9


def test_lockstepped_ranks_touch_experts_for_every_ranks_token() -> None:
    """One token on each of 8 ranks (dummy batches on the idle ones) picks 8 of 256 experts each: the step reads
    1 - (1 - 8/256)^8 = 22.4% of the experts, not the 3.1% one token would."""
    inp = _moe_inputs()
    assert abs(perf.touched_expert_fraction(inp, 1 * 8) - (1 - (1 - 8 / 256) ** 8)) < 1e-12
    assert abs(perf.touched_expert_fraction(inp, 1) - 8 / 256) < 1e-12
