"""Physics that must hold for any model shape and any GPU (issue 8 item 2), over generated shapes.

Shapes are Llama-style dense and Qwen-style MoE configs drawn by hypothesis; GPUs are bare memory
sizes (`vram_gib`). Settings a rule could change between the two plans being compared are pinned,
so each property compares like with like.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from planner.app import plan
from planner.models.arch import ModelArch, parse_config
from planner.render.json import render_json
from planner.schemas import Pinned, PlanRequest, PlanResponse

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RESPONSE_SCHEMA = PlanResponse.model_json_schema()


@st.composite
def model_shapes(draw: st.DrawFn) -> ModelArch:
    head_dim = draw(st.sampled_from([64, 128]))
    kv = draw(st.sampled_from([1, 2, 4, 8]))
    heads = kv * draw(st.sampled_from([1, 2, 4, 8]))
    hidden = heads * head_dim
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "num_hidden_layers": draw(st.integers(1, 48)), "num_attention_heads": heads, "num_key_value_heads": kv,
        "intermediate_size": hidden * draw(st.sampled_from([2, 3, 4])), "vocab_size": draw(st.integers(1000, 160000)),
        "max_position_embeddings": draw(st.sampled_from([4096, 8192, 32768, 131072])), "torch_dtype": "bfloat16",
        "tie_word_embeddings": draw(st.booleans()), "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    }
    if draw(st.booleans()):  # a Qwen3-MoE-style mixture of experts
        cfg.update({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "head_dim": head_dim,
                    "num_experts": draw(st.sampled_from([8, 16, 64])), "num_experts_per_tok": 2,
                    "moe_intermediate_size": hidden // 2, "decoder_sparse_step": 1, "mlp_only_layers": []})
    return parse_config(cfg, name="generated/model", source="hypothesis")


def _plan(arch: ModelArch, vram: float, gpus: int = 1, **pins: Any) -> PlanResponse:
    base = {"tensor_parallel_size": 1, "kv_cache_dtype": "auto", "gpu_memory_utilization": 0.9,
            "max_num_seqs": 256, "max_num_batched_tokens": 2048, "max_model_len": 4096}
    req = PlanRequest(model="generated/model", vram_gib=vram, gpus=gpus, pinned=Pinned(**{**base, **pins}))
    return plan(req, arch=arch)


def _valid_json(p: PlanResponse) -> None:
    jsonschema.validate(json.loads(render_json(p)), RESPONSE_SCHEMA)


@SETTINGS
@given(model_shapes(), st.floats(8, 160), st.floats(1, 80))
def test_more_memory_never_lowers_kv_capacity(arch: ModelArch, vram: float, more: float) -> None:
    small, big = _plan(arch, vram), _plan(arch, vram + more)
    _valid_json(small)
    assert big.memory.kv_cache_tokens >= small.memory.kv_cache_tokens
    assert big.memory.per_gpu.kv_cache_bytes >= small.memory.per_gpu.kv_cache_bytes


@SETTINGS
@given(model_shapes(), st.floats(16, 160), st.sampled_from([1024, 2048, 4096]), st.integers(2, 8))
def test_longer_context_never_raises_max_concurrency(arch: ModelArch, vram: float, short: int, factor: int) -> None:
    assume(short * factor <= arch.max_position_embeddings)
    a, b = _plan(arch, vram, max_model_len=short), _plan(arch, vram, max_model_len=short * factor)
    assert b.memory.max_concurrency <= a.memory.max_concurrency


@SETTINGS
@given(model_shapes(), st.sampled_from([2, 4, 8]))
def test_larger_tp_never_raises_per_gpu_weights(arch: ModelArch, tp: int) -> None:
    assume(arch.num_attention_heads % tp == 0)
    assume((tp <= arch.num_kv_heads and arch.num_kv_heads % tp == 0) or tp % arch.num_kv_heads == 0)
    one, many = _plan(arch, 80, gpus=1), _plan(arch, 80, gpus=tp, tensor_parallel_size=tp)
    assert many.memory.per_gpu.weights_bytes <= one.memory.per_gpu.weights_bytes
    _valid_json(many)


@SETTINGS
@given(model_shapes(), st.floats(24, 160))
def test_fp8_kv_at_least_doubles_tokens_less_page_rounding(arch: ModelArch, vram: float) -> None:
    bf16, fp8 = _plan(arch, vram), _plan(arch, vram, kv_cache_dtype="fp8")
    assume(bf16.memory.kv_cache_tokens > 0)
    assert fp8.memory.per_gpu.kv_cache_bytes == bf16.memory.per_gpu.kv_cache_bytes  # same budget left for KV
    block = bf16.config.block_size
    assert fp8.memory.kv_cache_tokens >= 2 * bf16.memory.kv_cache_tokens - block


@SETTINGS
@given(model_shapes(), st.floats(8, 200), st.integers(1, 8))
def test_plans_are_deterministic_and_budgets_add_up(arch: ModelArch, vram: float, gpus: int) -> None:
    req = PlanRequest(model="generated/model", vram_gib=vram, gpus=gpus)
    a, b = plan(req, arch=arch), plan(req, arch=arch)
    strip = {"audit"}
    assert a.model_dump(exclude=strip) == b.model_dump(exclude=strip)
    assert a.audit["firings"] == b.audit["firings"]
    m = a.memory.per_gpu
    if a.feasible:
        graphs = m.cuda_graph_bytes if a.memory.cuda_graph_in_budget else 0
        assert m.weights_bytes + m.activation_peak_bytes + m.non_torch_bytes + graphs + m.kv_cache_bytes == \
            m.budget_bytes
        assert m.kv_cache_bytes > 0 and a.memory.kv_cache_tokens > 0
    _valid_json(a)
