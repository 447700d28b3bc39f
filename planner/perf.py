"""Roofline performance model: decode step time, prefill rate, and a steady-state serving point.

Pure: no I/O. Every efficiency and factor is a rule-pack param (rules/core/pack.yaml, "performance
model"), fitted on shared/calibration/ by benchmarks/perf_accuracy.py --fit.

Decode step of one pipeline stage at `batch` running sequences of `ctx` tokens:
    memory   = (dense weights + routed experts the batch touches) / (HBM bw x eff x quant factor)
               + batch x ctx x kv_bytes_per_token / (HBM bw x eff)
    compute  = (2 x dense active params x batch + 4 x layers x heads x head_dim x batch x ctx) / (peak x compute_mfu)
               + 2 x routed-expert active params x batch / (peak x moe_compute_mfu)   (grouped GEMMs)
    comm     = per layer: TP all-reduce latency on the link x (TP - 1) + ring traffic of batch x hidden activations
    fixed    = per layer (kernels too short to reach the roofline) + per MoE layer (routing, permutation)
    step     = pp x (memory + compute + comm + fixed) x (1 + bubble) + pp sends + per-step overhead
Memory and compute are added, not overlapped (the H100 anchor in h100_decode_measured.json is
fitted within a few percent this way up to batch 256).

Serving at concurrency C (closed loop: each client sends its next request when one finishes):
    batch    = min(C per replica, max_num_seqs, KV cache tokens / (input + output/2),
                   max_num_batched_tokens x output / (input + output))   (chunked prefill: a step's token budget)
    ITL      = decode step(batch) + the prompts of the other batch-1 sequences, spread over their outputs
               (when the token budget limits the batch, prompts queue for it: every step carries a full budget)
    TTFT     = own chunked prefill (each chunk rides with the running decodes) + the expected part of
               other prompts already being prefilled + half a running step + the serving path's fixed
               cost + queueing when C exceeds what vLLM runs
    total    = batch x replicas x output_len / (TTFT + (output_len - 1) x ITL)
"""

from __future__ import annotations

import math
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
    peak_flops: float | None  # dense FLOP/s in the dtype the matmuls run in (bf16, fp8, fp4)
    interconnect: str  # nvlink | pcie | ... (the link the TP group uses)
    concurrency: int
    input_len: int
    output_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_tokens: int  # per replica
    hidden_size: int = 0
    act_bytes: int = 2
    expert_bytes_per_gpu: int = 0  # routed-expert part of weights_bytes_per_gpu (MoE)
    num_experts: int = 0
    experts_per_token: int = 0
    active_expert_params: int = 0  # routed-expert parameters one token uses (top-k of E), all layers
    num_moe_layers: int = 0
    link_bandwidth_bytes_per_s: float | None = None  # per GPU, both directions summed
    nodes: int = 1
    moe_lockstep: bool = False  # MoE with in-engine DP: the DP ranks' MoE layers step together (one engine)
    prefix_hit_rate: float = 0.0  # share of each prompt found in the prefix cache: never computed again
    offload_ms: float = 0.0  # per forward of one stage: the --cpu-offload-gb weights crossing the host link
    lora_bytes: int = 0  # per decode step of one stage: the active adapters' A/B slots the LoRA kernels read
    lora_flops_per_token: float = 0.0  # per GPU
    lora_overhead_ms: float = 0.0  # per decode step of one stage: shrink + expand launches per wrapped module
    spec_k: int = 0  # speculative tokens per step (0: no speculation)
    spec_tokens_per_step: float = 1.0  # expected tokens one speculative step emits per sequence
    draft_bytes: int = 0  # per draft forward pass on the last stage's GPU
    draft_flops_per_token: float = 0.0
    spec_passes: int = 0  # sequential draft forward passes per step (0: n-gram / suffix)
    spec_acceptance: float = 0.0  # per-token acceptance rate behind spec_tokens_per_step (for the assumptions)


def computed_prompt(inp: PerfInputs) -> int:
    """Prompt tokens a request's prefill computes: the uncached share (vLLM always computes at least the last
    prompt token, since its logits are needed: vllm/v1/core/kv_cache_manager.py get_computed_blocks)."""
    return max(1, min(inp.input_len, round(inp.input_len * (1.0 - inp.prefix_hit_rate))))


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


def kv_bound(inp: PerfInputs) -> int:
    """Sequences the KV cache holds at once: vLLM allocates blocks as tokens arrive, so a running
    sequence holds on average its prompt plus half its output."""
    return max(1, inp.kv_cache_tokens // max(1, inp.input_len + inp.output_len // 2))


def budget_bound(inp: PerfInputs) -> int:
    """Sequences that can keep decoding when a step carries at most max_num_batched_tokens tokens (chunked
    prefill): in steady state each step holds the batch's decode tokens plus the prompt tokens of the sequences
    that replace the finished ones (batch x input/output), so batch x (1 + input/output) <= the budget. Long
    prompts with short outputs (RAG, summarisation) hit this before KV capacity or max_num_seqs."""
    # a speculating sequence takes 1 + k tokens of the budget per step and emits spec_tokens_per_step of them
    per_step = (1 + inp.spec_k) * inp.output_len / inp.spec_tokens_per_step
    return max(1, int(inp.max_num_batched_tokens * inp.output_len // (computed_prompt(inp) + per_step)))


def _admission_bound(inp: PerfInputs) -> int:
    """Sequences per replica the clients, max_num_seqs and KV room allow."""
    return min(cdiv(inp.concurrency, inp.dp), inp.max_num_seqs, kv_bound(inp))


def budget_binds(inp: PerfInputs) -> bool:
    """Whether the token budget, not the clients, max_num_seqs or KV room, limits the running batch."""
    return budget_bound(inp) < _admission_bound(inp)


def batch_per_replica(inp: PerfInputs, chunked: bool = True) -> int:
    """Sequences vLLM keeps running per replica: bounded by the request, max_num_seqs, KV capacity and, with
    chunked prefill, the per-step token budget."""
    bound = _admission_bound(inp)
    return max(1, min(bound, budget_bound(inp)) if chunked else bound)


def touched_expert_fraction(inp: PerfInputs, tokens: int) -> float:
    """Expected share of routed experts a step reads when `tokens` tokens each pick top-k of E (uniform routing)."""
    if inp.num_experts <= 0 or inp.experts_per_token <= 0:
        return 1.0
    miss = 1.0 - inp.experts_per_token / inp.num_experts
    return 1.0 - miss ** max(1, tokens)


def _link_us(inp: PerfInputs, params: dict[str, Any]) -> float:
    key = "tp_allreduce_us_per_layer_" + inp.interconnect.replace("-", "_")
    return float(params.get(key, params["tp_allreduce_us_per_layer_pcie"]))  # an unknown link: PCIe, the slowest


def moe_ranks(inp: PerfInputs) -> int:
    """Ranks one MoE layer's collectives span: TP, or TP x DP when the DP ranks of one engine step together."""
    return inp.tp * (inp.dp if inp.moe_lockstep else 1)


def allreduce_ms(inp: PerfInputs, tokens: int, params: dict[str, Any]) -> float:
    """Collectives of one stage (two per layer): a latency per layer and per peer GPU (the ring's steps grow
    with the group) plus ring traffic over the link. Attention and dense layers all-reduce over TP; with
    lock-stepped DP ranks an MoE layer gathers and scatters the tokens of all TP x DP ranks (vLLM's
    all-gather/reduce-scatter or all-to-all dispatch and combine), so its group is TP x DP and its traffic
    the tokens of every rank."""
    groups = moe_ranks(inp)
    if inp.tp <= 1 and groups <= 1:
        return 0.0
    moe_layers = inp.num_moe_layers if inp.moe_lockstep else 0
    dense_layers = (inp.num_layers - moe_layers) / inp.pp
    moe_layers_stage = moe_layers / inp.pp
    link_us = _link_us(inp, params)
    latency_ms = link_us * ((inp.tp - 1) * dense_layers + (groups - 1) * moe_layers_stage) / 1000
    traffic_ms = 0.0
    if inp.link_bandwidth_bytes_per_s:
        per_dir = inp.link_bandwidth_bytes_per_s / 2
        row = tokens * inp.hidden_size * inp.act_bytes
        ring = 2 * (inp.tp - 1) / inp.tp * row * dense_layers
        ring += 2 * (groups - 1) / groups * row * (inp.dp if inp.moe_lockstep else 1) * moe_layers_stage
        traffic_ms = 2 * ring / per_dir * 1000
    return latency_ms + traffic_ms


def _pp_ms(inp: PerfInputs, params: dict[str, Any]) -> float:
    """Activation hand-offs between pipeline stages (network when the pipeline spans nodes)."""
    if inp.pp <= 1:
        return 0.0
    key = "pp_send_us_network" if inp.nodes > 1 else "pp_send_us_intranode"
    return (inp.pp - 1) * float(params[key]) / 1000


def stage_decode_ms(inp: PerfInputs, batch: int, ctx: int, params: dict[str, Any], query_len: int = 1) -> float:
    """One decode step of one pipeline stage (ms): memory time + compute time + TP communication, plus the
    serving features' terms (LoRA kernels, offloaded weights over the host link). `query_len` tokens per sequence
    (1 + k when a speculative step verifies k drafted tokens): FLOPs and activations grow with it, the weight and
    KV reads do not (each sequence's KV is read once for all its query tokens)."""
    assert inp.bandwidth_bytes_per_s and inp.peak_flops
    tokens = batch * query_len
    bw = inp.bandwidth_bytes_per_s * params["decode_bw_efficiency"]
    dense = inp.weights_bytes_per_gpu - inp.expert_bytes_per_gpu
    # Lock-stepped DP ranks route every rank's tokens (a 1-token dummy batch on an idle rank) to each rank's experts
    experts = inp.expert_bytes_per_gpu * touched_expert_fraction(inp, tokens * (inp.dp if inp.moe_lockstep else 1))
    mem_s = ((dense + experts) / (bw * params["quant_bw_factor"]) + batch * ctx * inp.kv_bytes_per_token_per_gpu / bw
             + inp.lora_bytes / bw)
    dense = 2 * (inp.active_params - inp.active_expert_params) / (inp.tp * inp.pp) * tokens
    routed = 2 * inp.active_expert_params / (inp.tp * inp.pp) * tokens
    attention = 4 * inp.num_layers / inp.pp * inp.num_attention_heads / inp.tp * inp.head_dim * tokens * ctx
    lora = inp.lora_flops_per_token / inp.pp * tokens
    compute_s = ((dense + attention + lora) / params["compute_mfu"]
                 + routed / params["moe_compute_mfu"]) / inp.peak_flops
    layers_us = (inp.num_layers * params["decode_layer_overhead_us"]
                 + inp.num_moe_layers * params["moe_layer_overhead_us"]) / inp.pp
    return ((mem_s + compute_s) * 1000 + allreduce_ms(inp, tokens, params) + layers_us / 1000 + inp.offload_ms
            + inp.lora_overhead_ms)


def decode_step_ms(inp: PerfInputs, batch: int, ctx: int, params: dict[str, Any], query_len: int = 1) -> float:
    """One decode step of the whole pipeline (ms): with PP the running batch is split into pp
    micro-batches that follow each other through the stages, so a token waits for all pp stages."""
    micro = max(1, cdiv(batch, inp.pp))
    stages = inp.pp * stage_decode_ms(inp, micro, ctx, params, query_len) * (
        1 + (params["pp_bubble_fraction"] if inp.pp > 1 else 0.0))
    return stages + _pp_ms(inp, params) + params["decode_step_overhead_ms"]


def draft_pass_ms(inp: PerfInputs, batch: int, params: dict[str, Any]) -> float:
    """One sequential forward pass of the speculative drafter over `batch` sequences (ms): its weights (and the
    lm_head it samples from) at the decode bandwidth, its FLOPs at the decode MFU, plus a launch overhead
    (planner/features/speculative.py draft_step_ms)."""
    assert inp.bandwidth_bytes_per_s and inp.peak_flops
    if not inp.spec_passes:
        return 0.0
    mem_s = inp.draft_bytes / (inp.bandwidth_bytes_per_s * params["decode_bw_efficiency"])
    compute_s = inp.draft_flops_per_token * batch / (inp.peak_flops * params["compute_mfu"])
    return (mem_s + compute_s) * 1000 + float(params["spec_draft_pass_overhead_ms"])


def step_ms(inp: PerfInputs, batch: int, ctx: int, params: dict[str, Any]) -> float:
    """One engine step (ms): a plain decode step, or with speculation the target verifying batch x (1 + k)
    tokens, the drafter's sequential passes and the proposer/rejection-sampler overhead."""
    if not inp.spec_k:
        return decode_step_ms(inp, batch, ctx, params)
    drafts = inp.spec_passes * draft_pass_ms(inp, batch, params)
    return decode_step_ms(inp, batch, ctx, params, 1 + inp.spec_k) + drafts + float(params["spec_step_overhead_ms"])


def spec_gain(inp: PerfInputs, batch: int, ctx: int, params: dict[str, Any]) -> float:
    """Plain decode time per token over speculative decode time per token at `batch` sequences (> 1: speculation
    pays). Taken as the lowest gain at any batch up to this one (over powers of two and the batch itself), so it
    never rises with concurrency: a roofline would credit the drafter's fixed costs an amortisation at large
    batches that vLLM's guidance (speculation pays at low load) does not support."""
    if not inp.spec_k:
        return 1.0
    points = {1 << i for i in range(max(1, batch).bit_length())} | {max(1, batch)}
    return min(decode_step_ms(inp, b, ctx, params) * inp.spec_tokens_per_step / step_ms(inp, b, ctx, params)
               for b in points)


def token_ms(inp: PerfInputs, batch: int, ctx: int, params: dict[str, Any]) -> float:
    """Decode time per output token of each of `batch` running sequences (ms): the step time, divided by the
    speculative gain when speculating."""
    plain = decode_step_ms(inp, batch, ctx, params)
    return plain / spec_gain(inp, batch, ctx, params) if inp.spec_k else plain


def spec_break_even(inp: PerfInputs, ctx: int, params: dict[str, Any], limit: int = 4096) -> int | None:
    """Smallest running batch (per replica) at which speculation stops paying, or None up to `limit`."""
    if not inp.spec_k or spec_gain(inp, limit, ctx, params) > 1.0:
        return None
    lo, hi = 1, limit  # spec_gain never rises with the batch: bisect for the first batch with gain <= 1
    if spec_gain(inp, 1, ctx, params) <= 1.0:
        return 1
    while lo < hi - 1:
        mid = (lo + hi) // 2
        if spec_gain(inp, mid, ctx, params) <= 1.0:
            hi = mid
        else:
            lo = mid
    return hi


def prefill_ms(inp: PerfInputs, tokens: int, prompt_len: int, params: dict[str, Any]) -> float:
    """Time (ms) to push `tokens` prompt tokens (of prompts `prompt_len` long) through all stages:
    linear and causal attention FLOPs at the prefill MFU, never faster than reading the weights once."""
    assert inp.bandwidth_bytes_per_s and inp.peak_flops
    linear = 2 * inp.active_params * tokens
    attention = 2 * inp.num_layers * inp.num_attention_heads * inp.head_dim * prompt_len * tokens  # causal half
    compute_s = (linear + attention) / inp.tp / (inp.peak_flops * params["prefill_mfu"])
    weights_s = inp.weights_bytes_per_gpu * inp.pp / (inp.bandwidth_bytes_per_s * params["decode_bw_efficiency"])
    return max(compute_s, weights_s) * 1000 + (allreduce_ms(inp, tokens, params) + inp.offload_ms) * inp.pp


def prefill_tokens_per_s(inp: PerfInputs, params: dict[str, Any]) -> float:
    """Prompt tokens one replica takes in per second at full chunks (pipeline stages work on different chunks at
    once). Prefix-cache hits are taken in without computing: only the uncached share costs time."""
    chunk = max(1, min(computed_prompt(inp), inp.max_num_batched_tokens))
    computed = chunk / prefill_ms(inp, chunk, inp.input_len, params) * 1000 * inp.pp
    return computed * inp.input_len / computed_prompt(inp)


def prompt_token_ms(inp: PerfInputs, params: dict[str, Any]) -> float:
    """Marginal latency (ms) of one prompt token riding in decode steps through all stages: its FLOPs only,
    since the steps read the weights anyway."""
    assert inp.peak_flops
    flops = 2 * inp.active_params + 2 * inp.num_layers * inp.num_attention_heads * inp.head_dim * inp.input_len
    return flops / inp.tp / (inp.peak_flops * params["prefill_mfu"]) * 1000


@dataclass(frozen=True)
class ServingPoint:
    """The closed-loop operating point of one replica (times in ms)."""

    batch: int
    ctx: int
    decode_ms: float
    itl_ms: float
    ttft_ms: float
    queue_ms: float
    budget_full: bool  # prompts queue for the token budget: every step is full
    chunks: int
    chunk: int
    own_ms: float = 0.0  # the request's own prefill (its chunks riding in the running decodes)
    ahead_ms: float = 0.0  # expected wait for other prompts already being prefilled


def _prompt_room(inp: PerfInputs, batch: int) -> int:
    """Prompt tokens a full step carries beside `batch` decodes (each 1 + k tokens when speculating)."""
    return max(0, inp.max_num_batched_tokens - batch * (1 + inp.spec_k))


def serving_point(inp: PerfInputs, params: dict[str, Any]) -> ServingPoint:
    """ITL and TTFT of one replica running `batch` sequences with the other sequences' prompts interleaved
    (chunked prefill; with the V0 engine's unchunked prefill they pause the decodes instead)."""
    batch = batch_per_replica(inp, bool(params["chunked_prefill"]))
    ctx = inp.input_len + inp.output_len // 2
    decode = token_ms(inp, batch, ctx, params)
    per_prompt_token = prompt_token_ms(inp, params)
    chunked = bool(params["chunked_prefill"])
    # The other batch-1 sequences each prefill input_len tokens per output_len decode steps: riding in decode
    # steps (chunked prefill), or (V0 engine) in prefill-only steps that pause the decodes.
    new = computed_prompt(inp)  # the uncached share of a prompt: the rest comes from the prefix cache
    prompt_ms = new * per_prompt_token if chunked else prefill_ms(inp, new, inp.input_len, params)
    shared_ms = prompt_ms / inp.pp  # one prompt's share of a pipeline cycle: each stage does 1/pp of its work
    budget_full = chunked and budget_binds(inp)
    if budget_full:  # prompts queue for the budget: every step fills it with prompt chunks
        itl = decode + _prompt_room(inp, batch) * per_prompt_token / inp.pp / inp.spec_tokens_per_step
    else:
        itl = decode + (batch - 1) / inp.output_len * shared_ms
    chunk = max(1, min(new, inp.max_num_batched_tokens - (batch - 1))) if chunked else new
    chunks = cdiv(new, chunk)
    if not chunked:
        own = prompt_ms
    elif batch > 1:  # each chunk rides in a step of the other decodes: one weight read, the chunk's FLOPs on top
        own = chunks * step_ms(inp, batch - 1, ctx, params) + new * per_prompt_token
    else:
        full, rest = divmod(new, chunk)
        own = full * prefill_ms(inp, chunk, inp.input_len, params)
        own += prefill_ms(inp, rest, inp.input_len, params) if rest else 0.0
    service = own + (inp.output_len - 1) * itl
    # Other sequences are mid-prefill for own/service of their lifetime; on average half of theirs is left.
    ahead = (batch - 1) * min(1.0, own / service) * shared_ms / 2
    # A new request waits on average half a running step before it is scheduled, plus the serving path's
    # fixed cost (HTTP, tokenization, detokenizing the first token).
    ttft = own + ahead + (decode / 2 if batch > 1 else 0.0) + params["ttft_overhead_ms"]
    running = batch * inp.dp
    queue = (inp.concurrency / running - 1) * (ttft + (inp.output_len - 1) * itl) if inp.concurrency > running else 0.0
    return ServingPoint(batch=batch, ctx=ctx, decode_ms=decode, itl_ms=itl, ttft_ms=ttft + queue, queue_ms=queue,
                        budget_full=budget_full, chunks=chunks, chunk=chunk, own_ms=own, ahead_ms=ahead)


def estimate(inp: PerfInputs, params: dict[str, Any]) -> PerfResult | None:
    """Speeds at the requested operating point, or None when the GPU's bandwidth/FLOPs are unknown."""
    if not inp.bandwidth_bytes_per_s or not inp.peak_flops:
        return None
    sp = serving_point(inp, params)
    running = min(inp.concurrency, sp.batch * inp.dp)
    service_ms = sp.ttft_ms - sp.queue_ms + (inp.output_len - 1) * sp.itl_ms
    if sp.budget_full:  # each step prefills (budget - batch) prompt tokens: that many prompts' outputs per step
        total = (inp.dp * _prompt_room(inp, sp.batch) / computed_prompt(inp) * inp.output_len
                 / (sp.itl_ms * inp.spec_tokens_per_step) * 1000)
    else:
        total = running * inp.output_len / service_ms * 1000
    assumptions = [
        f"{sp.batch} sequences per replica decode together (concurrency {inp.concurrency} over {inp.dp} replica(s), "
        f"max_num_seqs {inp.max_num_seqs}, KV room for {kv_bound(inp)} sequences at input + half the output"
        + (f", token budget for {budget_bound(inp)}: each step carries the decodes plus the prompts replacing "
           f"them, at most max_num_batched_tokens {inp.max_num_batched_tokens})" if params["chunked_prefill"] else ")"),
        f"average decode context {sp.ctx} tokens (input + half the output)",
        f"prompts queue for the token budget: every step carries {inp.max_num_batched_tokens} tokens "
        f"({sp.batch} decodes, {inp.max_num_batched_tokens - sp.batch} prompt tokens)" if sp.budget_full else
        f"closed loop: each finished request is replaced at once, so {sp.batch - 1} other prompts of "
        f"{computed_prompt(inp)} tokens are prefilled during each request's {inp.output_len} decode steps",
        f"own prompt prefilled in {sp.chunks} chunk(s) of up to {sp.chunk} tokens (max_num_batched_tokens "
        f"{inp.max_num_batched_tokens} less the running decodes), each sharing a step with them"
        if params["chunked_prefill"] else "no chunked prefill (V0 engine): each prompt runs in a step of its own",
    ]
    if inp.spec_k:
        assumptions.append(
            f"speculative decoding: {inp.spec_k} drafted tokens per step, each accepted with probability "
            f"{inp.spec_acceptance:.2f}, so {inp.spec_tokens_per_step:.2f} tokens per step; a step verifies "
            f"{1 + inp.spec_k} tokens per sequence and runs {inp.spec_passes} draft pass(es): "
            f"{spec_gain(inp, sp.batch, sp.ctx, params):.2f}x the plain decode speed at {sp.batch} sequences "
            "(the gain only falls as the batch grows)")
    if inp.lora_overhead_ms or inp.lora_bytes:
        assumptions.append(f"LoRA: each decode step reads {inp.lora_bytes / 2**20:.0f} MiB of adapter slots (one "
                           f"adapter per running sequence, up to --max-loras) and pays {inp.lora_overhead_ms:.2f} ms "
                           "of shrink/expand kernel launches")
    if inp.offload_ms:
        assumptions.append(f"CPU offload: every forward streams the offloaded weights over the host link, "
                           f"{inp.offload_ms:.1f} ms per stage")
    if inp.prefix_hit_rate > 0:
        assumptions.append(f"prefix cache: {inp.prefix_hit_rate:.0%} of each prompt is a cache hit "
                           f"(--prefix-hit-rate), so {computed_prompt(inp)} of {inp.input_len} prompt tokens are "
                           "computed; prefill_tokens_per_s counts every prompt token taken in, cached or not")
    if sp.queue_ms > 0:
        assumptions.append(f"{inp.concurrency - running} request(s) wait for a free slot: "
                           f"{sp.queue_ms:,.0f} ms of queueing included in TTFT")
    if inp.num_experts:
        assumptions.append(f"MoE: a decode step reads {touched_expert_fraction(inp, sp.batch):.0%} of the routed "
                           f"experts ({inp.experts_per_token} of {inp.num_experts} per token, uniform routing)")
    if inp.pp > 1:
        assumptions.append(f"pipeline: {inp.pp} stages, micro-batches of {cdiv(sp.batch, inp.pp)}, bubble "
                           f"{params['pp_bubble_fraction']:.0%}")
    return PerfResult(
        itl_ms=sp.itl_ms, ttft_ms=sp.ttft_ms, decode_tokens_per_s_per_request=1000.0 / sp.itl_ms,
        output_tokens_per_s_total=total, prefill_tokens_per_s=prefill_tokens_per_s(inp, params) * inp.dp,
        effective_concurrency=running, batch_per_replica=sp.batch, assumptions=tuple(assumptions),
    )


def ranges(value: float, low: float, high: float) -> dict[str, float]:
    """{low, expected, high} from the calibrated ratio band measured/predicted (low <= 1 <= high)."""
    return {"low": round(value * low, 3), "expected": round(value, 3), "high": round(value * high, 3)}


def log_ratio(measured: float, predicted: float) -> float:
    """Residual used for fitting and range widths: symmetric in over- and under-prediction."""
    return math.log(measured / predicted)
