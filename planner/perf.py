"""Roofline performance model: decode step time, prefill rate, TTFT and throughput.

Pure: no I/O. Every efficiency is a rule-pack param (decode_bw_efficiency, compute_mfu,
decode_step_overhead_ms, tp_allreduce_us_per_layer_*, perf_rel_low/high).

Decode step (one replica, one pipeline stage):
    t = (weights + batch x ctx x kv_bytes_per_token) / (bandwidth x eff)      memory time
      + 2 x active_params_per_gpu x batch / (peak x mfu)                      compute time
      + overhead + layers x all-reduce (TP > 1)
Memory and compute are added, not overlapped: on the H100 anchor (shared/calibration/
h100_decode_measured.json, Llama-3.1-8B bf16) this predicts 10.8 / 14.7 / 22.6 ms at batch
64 / 128 / 256 (ctx 1024) against 10.9 / 15.0 / 23.5 ms measured. Issue 6 calibrates the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner.units import cdiv


@dataclass(frozen=True, kw_only=True)
class PerfInputs:
    """What the performance model needs to know about one configuration."""

    weights_bytes_per_gpu: int
    kv_bytes_per_token_per_gpu: int
    active_params: int
    num_layers: int
    num_attention_heads: int
    head_dim: int
    tp: int
    pp: int
    dp: int
    bandwidth_bytes_per_s: float | None
    peak_flops: float | None  # dense FLOP/s in the compute dtype
    interconnect: str
    concurrency: int
    input_len: int
    output_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_tokens: int  # per replica


@dataclass(frozen=True)
class PerfResult:
    itl_ms: float
    ttft_ms: float
    decode_tokens_per_s_per_request: float
    output_tokens_per_s_total: float
    prefill_tokens_per_s: float
    effective_concurrency: int  # over all replicas
    batch_per_replica: int
    assumptions: tuple[str, ...]


def batch_per_replica(inp: PerfInputs) -> int:
    """Sequences vLLM keeps running per replica: bounded by the request, max_num_seqs and KV capacity."""
    per_replica = cdiv(inp.concurrency, inp.dp)
    tokens_per_seq = inp.input_len + inp.output_len
    kv_bound = max(1, inp.kv_cache_tokens // max(1, tokens_per_seq))
    return max(1, min(per_replica, inp.max_num_seqs, kv_bound))


def decode_step_ms(inp: PerfInputs, batch: int, ctx: int, params: dict[str, Any]) -> float:
    """One decode step of the whole pipeline (ms) at `batch` sequences with `ctx` tokens of context."""
    assert inp.bandwidth_bytes_per_s and inp.peak_flops
    bw = inp.bandwidth_bytes_per_s * params["decode_bw_efficiency"]
    mem_s = (inp.weights_bytes_per_gpu + batch * ctx * inp.kv_bytes_per_token_per_gpu) / bw
    flops = 2 * inp.active_params / (inp.tp * inp.pp) * batch
    compute_s = flops / (inp.peak_flops * params["compute_mfu"])
    comm_ms = 0.0
    if inp.tp > 1:
        key = "tp_allreduce_us_per_layer_nvlink" if inp.interconnect == "nvlink" else "tp_allreduce_us_per_layer_pcie"
        comm_ms = params[key] * inp.num_layers / inp.pp / 1000
    stage_ms = (mem_s + compute_s) * 1000 + comm_ms
    return stage_ms * inp.pp + params["decode_step_overhead_ms"]


def prefill_tokens_per_s(inp: PerfInputs, params: dict[str, Any]) -> float:
    """Prefill rate of one replica: linear FLOPs plus causal attention FLOPs at this prompt length."""
    assert inp.peak_flops
    linear = 2 * inp.active_params
    attention = 2 * inp.num_layers * inp.num_attention_heads * inp.head_dim * inp.input_len  # QK^T and PV, causal half
    per_token = (linear + attention) / (inp.tp * inp.pp)
    return inp.peak_flops * params["compute_mfu"] / per_token / inp.pp


def estimate(inp: PerfInputs, params: dict[str, Any]) -> PerfResult | None:
    """Speeds at the requested operating point, or None when the GPU's bandwidth/FLOPs are unknown."""
    if not inp.bandwidth_bytes_per_s or not inp.peak_flops:
        return None
    batch = batch_per_replica(inp)
    ctx = inp.input_len + inp.output_len // 2
    itl = decode_step_ms(inp, batch, ctx, params)
    prefill = prefill_tokens_per_s(inp, params)
    chunk = min(inp.input_len, inp.max_num_batched_tokens)
    chunks = cdiv(inp.input_len, inp.max_num_batched_tokens)
    others = max(0, batch - 1)
    per_chunk_ms = chunk / prefill * 1000 + (decode_step_ms(inp, others, ctx, params) if others else 0.0)
    ttft = chunks * per_chunk_ms
    assumptions = [
        f"{batch} sequences per replica decode together (concurrency {inp.concurrency} over {inp.dp} replica(s), "
        f"max_num_seqs {inp.max_num_seqs}, KV room for {inp.kv_cache_tokens // max(1, inp.input_len + inp.output_len)}"
        " full requests)",
        f"average decode context {ctx} tokens (input + half the output)",
        f"prompts prefilled in {chunks} chunk(s) of up to {inp.max_num_batched_tokens} tokens, each sharing a step"
        " with the running decodes",
    ]
    return PerfResult(
        itl_ms=itl, ttft_ms=ttft, decode_tokens_per_s_per_request=1000.0 / itl,
        output_tokens_per_s_total=min(inp.concurrency, batch * inp.dp) * 1000.0 / itl,
        prefill_tokens_per_s=prefill * inp.dp,
        effective_concurrency=min(inp.concurrency, batch * inp.dp), batch_per_replica=batch,
        assumptions=tuple(assumptions),
    )
