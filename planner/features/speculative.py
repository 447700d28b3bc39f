"""Speculative decoding (`--speculative-config JSON`, issue 19): validation, draft memory, KV and speed.

Pure: no I/O (a draft model's config is loaded by the caller's `load_draft`). Mirrors vLLM:

* vllm/config/speculative.py SpeculativeConfig (0.11+; vllm/config.py in 0.8.5): the JSON is the dataclass'
  keyword arguments, so an unknown key is refused; `method` is a Literal per version; every `*_mtp` spelling
  is deprecated to "mtp"; `num_speculative_tokens` > 0 (or the draft config's `n_predict`); ngram defaults
  prompt_lookup_min/max to 5; `draft_tensor_parallel_size` is 1 or the target's TP (_verify_and_get_draft_tp),
  and the V1 DraftModelProposer requires it equal to the target's TP (0.15+ _raise_if_draft_tp_mismatch).
* vllm/v1/spec_decode/llm_base_proposer.py (eagle.py before 0.20) load_model: MTP and EAGLE drafters share the
  target's embed_tokens and lm_head when PP = 1 (an EAGLE-3 head keeps its own reduced-vocab lm_head);
  draft models (draft_model.py) share nothing. The drafter is built on the last PP stage only.
* The drafter's attention layers are in the same KV-cache spec as the target's (one block pool), and the
  scheduler reserves `num_lookahead_tokens` extra slots per running request (vllm/config/vllm.py
  VllmConfig.num_lookahead_tokens in 0.29+, Scheduler.__init__ before).
* CUDA-graph capture sizes scale with decode_query_len = 1 + num_speculative_tokens (spec 4.4).

Acceptance rates and the proposer's fixed cost are rule-pack params (empirical), passed in as `params`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.errors import InputError
from planner.features import SpecDecode
from planner.kvcache import attention_bytes_per_token_per_layer
from planner.models.arch import ModelArch
from planner.models.params import active_params, mtp_layer_count, mtp_rank_bytes, padded_vocab, rank_weights
from planner.units import cdiv

FLAG = "--speculative-config"
KNOWN_VERSIONS = ("0.6.4", "0.8.5", "0.11.0", "0.15.0", "0.19.0", "0.20.0", "0.25.0", "0.29.0", "0.33.0")

# ---------------------------------------------------------------------------------------- vLLM vocabulary

# MTPModelTypes of each version (0.11.0: the SpeculativeMethod Literal's *_mtp names; glm4_moe_mtp was only in
# MTP_MODEL_TYPES there, so GLM-4.5 is spelled "mtp").
_MTP_0_11 = ("deepseek_mtp", "ernie_mtp", "qwen3_next_mtp", "mimo_mtp", "longcat_flash_mtp", "mtp")
_MTP_0_15 = ("deepseek_mtp", "mimo_mtp", "glm4_moe_mtp", "glm4_moe_lite_mtp", "ernie_mtp", "exaone_moe_mtp",
             "qwen3_next_mtp", "longcat_flash_mtp", "mtp", "pangu_ultra_moe_mtp")
_MTP_0_19 = (*_MTP_0_15, "glm_ocr_mtp", "nemotron_h_mtp", "qwen3_5_mtp", "step3p5_mtp")
_MTP_0_20 = (*_MTP_0_19, "exaone4_5_mtp", "hy_v3_mtp")
_MTP_0_25 = (*_MTP_0_20, "mimo_v2_mtp", "minimax_m3_mtp", "bailing_hybrid_mtp", "gemma4_mtp")
_MTP_0_29 = (*_MTP_0_25, "dots3_note_mtp", "qwen4_exp_mtp", "bailing_hybrid_v3_mtp", "kimi_k3_mtp", "hy_v4_mtp",
             "inkling_mtp")
_MTP_0_33 = (*_MTP_0_29, "step5_mtp", "glm5_next_mtp")

# SpeculativeMethod per version (vllm/config/speculative.py; 0.8.5 vllm/config.py also handles "eagle3").
METHODS: dict[str, frozenset[str]] = {
    "0.8.5": frozenset({"ngram", "eagle", "eagle3", "medusa", "mlp_speculator", "draft_model"}),
    "0.11.0": frozenset({"ngram", "eagle", "eagle3", "medusa", "mlp_speculator", "draft_model", *_MTP_0_11}),
    "0.15.0": frozenset({"ngram", "medusa", "mlp_speculator", "draft_model", "suffix", "eagle", "eagle3",
                         *_MTP_0_15}),
    "0.19.0": frozenset({"ngram", "ngram_gpu", "medusa", "mlp_speculator", "draft_model", "suffix", "eagle",
                         "eagle3", "extract_hidden_states", *_MTP_0_19}),
    "0.20.0": frozenset({"ngram", "ngram_gpu", "medusa", "mlp_speculator", "draft_model", "suffix", "eagle",
                         "eagle3", "extract_hidden_states", "dflash", *_MTP_0_20}),
    "0.25.0": frozenset({"ngram", "ngram_gpu", "medusa", "mlp_speculator", "draft_model", "suffix", "custom_class",
                         "eagle", "eagle3", "extract_hidden_states", "dflash", "dspark", *_MTP_0_25}),
    "0.29.0": frozenset({"ngram", "ngram_gpu", "medusa", "mlp_speculator", "draft_model", "suffix", "custom_class",
                         "eagle", "eagle3", "extract_hidden_states", "dflash", "dspark", *_MTP_0_29}),
    "0.33.0": frozenset({"ngram", "ngram_gpu", "draft_model", "suffix", "custom_class", "eagle", "eagle3",
                         "extract_hidden_states", "dflash", "dspark", *_MTP_0_33}),
}
MTP_NAMES = frozenset(_MTP_0_33 + _MTP_0_11)

# SpeculativeConfig fields a user may pass, per version (the engine-filled target_/draft_ configs left out).
_KEYS_0_8 = ("num_speculative_tokens", "model", "method", "acceptance_method", "draft_tensor_parallel_size",
             "disable_logprobs", "quantization", "max_model_len", "revision", "code_revision", "disable_mqa_scorer",
             "disable_by_batch_size", "prompt_lookup_max", "prompt_lookup_min", "posterior_threshold",
             "posterior_alpha")
_KEYS_0_11 = ("enforce_eager", "num_speculative_tokens", "model", "method", "draft_tensor_parallel_size",
              "disable_logprobs", "quantization", "max_model_len", "revision", "code_revision",
              "disable_by_batch_size", "disable_padded_drafter_batch", "prompt_lookup_max", "prompt_lookup_min",
              "speculative_token_tree")
_SUFFIX = ("suffix_decoding_max_tree_depth", "suffix_decoding_max_cached_requests",
           "suffix_decoding_max_spec_factor", "suffix_decoding_min_token_prob")
_KEYS_0_15 = tuple(k for k in _KEYS_0_11 if k != "disable_logprobs") + _SUFFIX
_KEYS_0_19 = (*(k for k in _KEYS_0_15 if k != "disable_by_batch_size"), "moe_backend", "use_local_argmax_reduction",
              "parallel_drafting", "draft_load_config", "rejection_sample_method", "synthetic_acceptance_rate")
_KEYS_0_20 = (*(k for k in _KEYS_0_19 if k != "synthetic_acceptance_rate"), "synthetic_acceptance_rates",
              "synthetic_acceptance_length")
_KEYS_0_25 = (*(k for k in _KEYS_0_20 if k != "speculative_token_tree"), "attention_backend", "use_heterogeneous_vocab",
              "num_speculative_tokens_per_batch_size", "draft_sample_method")
_KEYS_0_29 = (*_KEYS_0_25, "kv_cache_dtype", "index_share_for_mtp_iteration", "enable_adaptive_verification",
              "dspark_draft_topk")
_KEYS_0_33 = (*_KEYS_0_29, "disable_eagle_block_drop", "disable_lookahead_block_hashes", "draft_lm_head_quantization",
              "xpress_topc", "fly_window_size", "fly_entropy_threshold", "fly_entropy_top_k")
KEYS: dict[str, frozenset[str]] = {
    "0.8.5": frozenset(_KEYS_0_8), "0.11.0": frozenset(_KEYS_0_11), "0.15.0": frozenset(_KEYS_0_15),
    "0.19.0": frozenset(_KEYS_0_19), "0.20.0": frozenset(_KEYS_0_20), "0.25.0": frozenset(_KEYS_0_25),
    "0.29.0": frozenset(_KEYS_0_29), "0.33.0": frozenset(_KEYS_0_33),
}

# Methods whose memory and speed the planner models; the rest vLLM accepts but the planner refuses to plan.
MODELLED = frozenset({"ngram", "ngram_gpu", "suffix", "eagle", "eagle3", "mtp", "draft_model"})
NO_DRAFT_MODEL = frozenset({"ngram", "ngram_gpu", "suffix"})  # proposers without GPU weights or KV
EAGLE_LIKE = frozenset({"eagle", "eagle3", "mtp"})  # SpeculativeConfig.use_eagle() (0.11 - 0.29)

# EAGLE heads: the draft checkpoint's architectures (vllm/model_executor/models/registry.py
# _SPECULATIVE_DECODING_MODELS)
EAGLE3_ARCHS = frozenset({"LlamaForCausalLMEagle3", "Eagle3LlamaForCausalLM", "Eagle3Qwen2_5vlForCausalLM",
                          "Eagle3Qwen3vlForCausalLM", "Eagle3Speculator", "LlamaForCausalLMEagle3Speculator"})
EAGLE_ARCHS = frozenset({"EagleLlamaForCausalLM", "LlamaForCausalLMEagle", "EagleMiniCPMForCausalLM",
                         "EagleLlama4ForCausalLM", "EagleDeepSeekMTPModel", "EagleMistralLarge3ForCausalLM"})


def _vkey(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def known_version(version: str) -> str:
    """The newest known vLLM version at or below `version` (the accounting that version follows)."""
    key = _vkey(version)
    best = KNOWN_VERSIONS[0]
    for v in KNOWN_VERSIONS:
        if _vkey(v) <= key:
            best = v
    return best


def _fail(key: str, value: Any, why: str) -> InputError:
    return InputError(f"{FLAG}: {key}={value!r}: {why}")


# ---------------------------------------------------------------------------------------------- parsing


def _pos_int(config: dict[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(key, value, "must be an integer >= 1")
    return value


def _draft_kind(draft: ModelArch) -> str | None:
    """eagle / eagle3 from the draft checkpoint's architecture (None: an ordinary causal LM)."""
    archs = set(draft.architectures)
    if archs & EAGLE3_ARCHS or (draft.raw.get("draft_vocab_size") is not None and "eagle" in draft.name.lower()):
        return "eagle3"
    if archs & EAGLE_ARCHS:
        return "eagle"
    return None


def parse_speculative(config: dict[str, Any], *, target: ModelArch, version: str, tp: int = 1, pp: int = 1,
                      load_draft: Callable[[str], ModelArch]) -> SpecDecode:
    """`--speculative-config` JSON -> SpecDecode, refusing what that vLLM version refuses (InputError, one line
    naming the flag, key and value). `load_draft` turns the "model" value (a local dir or catalog id: the planner
    is offline) into the draft's ModelArch. MTP reuses the target's own MTP layers (no "model")."""
    if not isinstance(config, dict):
        raise InputError(f"{FLAG}: expected a JSON object, got {type(config).__name__}")
    v = known_version(version)
    if v == "0.6.4":
        raise InputError(f"{FLAG}: not in vLLM {version} (it takes --speculative-model and --num-speculative-tokens)")
    allowed = KEYS[v]
    for key in config:
        if key == "tensor_parallel_size" and _vkey(v) >= (0, 15, 0):
            raise _fail(key, config[key], "pass draft_tensor_parallel_size instead (vLLM refuses this key)")
        if key not in allowed:
            raise _fail(key, config[key], f"unknown key for vLLM {v} (SpeculativeConfig has no such field)")
    k = _pos_int(config, "num_speculative_tokens")
    draft_tp = _pos_int(config, "draft_tensor_parallel_size")
    method = config.get("method")
    model = config.get("model")
    if method is not None and not isinstance(method, str):
        raise _fail("method", method, "must be a string")
    if model is not None and (not isinstance(model, str) or not model):
        raise _fail("model", model, "must be a model name or directory")
    if method == "[ngram]":
        method = "ngram"
    if method is None and model in ("ngram", "[ngram]"):
        method = "ngram"
    if method is not None and method not in METHODS[v]:
        names = ", ".join(sorted(METHODS[v]))
        raise _fail("method", method, f"not a speculative method of vLLM {v} (one of: {names})")
    if method in MTP_NAMES:
        method = "mtp"  # SpeculativeConfig.__post_init__: "method `x` is deprecated and replaced with mtp"
    draft: ModelArch | None = None
    if method is None and model is None and k is not None and v == "0.8.5" and mtp_layer_count(target) > 0 \
            and target.model_type == "deepseek_v3":
        method = "mtp"  # 0.8.5: num_speculative_tokens without a model on a DeepSeek-V3 target drafts with its MTP
    if method is None and model is None:
        raise _fail("method", None, "give a method (ngram, eagle, eagle3, mtp, draft_model, ...) or a draft model")
    if method == "mtp":
        if mtp_layer_count(target) <= 0:
            raise _fail("method", config.get("method", "mtp"),
                        f"{target.name} has no MTP layers (num_nextn_predict_layers / mtp_num_hidden_layers)")
        if model is not None and model != target.name:
            draft = load_draft(model)
            if mtp_layer_count(draft) <= 0:
                raise _fail("model", model, "an MTP draft must be a checkpoint with MTP layers")
        n_predict = mtp_layer_count(target)
        if k is None:
            k = n_predict  # vLLM defaults num_speculative_tokens to the draft config's n_predict
        elif k > n_predict and k % n_predict:
            raise _fail("num_speculative_tokens", k, f"must be divisible by n_predict={n_predict} (MTP layers)")
    elif method in NO_DRAFT_MODEL:
        if method in ("ngram", "ngram_gpu"):
            lo, hi = _pos_int(config, "prompt_lookup_min"), _pos_int(config, "prompt_lookup_max")
            lo, hi = lo or hi or 5, hi or lo or 5
            if lo > hi:
                raise _fail("prompt_lookup_min", lo, f"must be <= prompt_lookup_max={hi}")
        if k is None and method == "suffix":
            k = int(config.get("suffix_decoding_max_tree_depth", 24))  # vLLM: the tree depth bounds the tokens
    else:
        if model is None:
            raise _fail("model", None, f"method {method!r} needs a draft model (\"model\": a local dir or catalog id)")
        draft = load_draft(model)
        detected = _draft_kind(draft)
        if method is None:
            low = model.lower()
            method = ("eagle3" if "eagle3" in low or detected == "eagle3" else
                      "eagle" if "eagle-" in low or detected == "eagle" else "draft_model")
        if method == "draft_model":
            if draft.vocab_size != target.vocab_size:
                raise _fail("model", model, f"vocab_size {draft.vocab_size} differs from the target's "
                            f"{target.vocab_size} (vLLM verify_equal_vocab_size_if_draft_model)")
            if v == "0.11.0":
                raise _fail("method", "draft_model", "vLLM 0.11 V1 refuses it (\"Draft model speculative decoding "
                            "is not supported yet\")")
        if method == "eagle3" and _vkey(v) >= (0, 11, 0) and not any(
                s in target.model_type for s in ("llama", "qwen", "minicpm", "gpt_oss", "deepseek", "kimi", "glm")):
            raise _fail("method", "eagle3", f"vLLM {v} supports EAGLE-3 only for llama/qwen/minicpm/gpt_oss-style "
                        f"targets, not {target.model_type}")
        n_predict = draft.raw.get("n_predict")
        if k is None and isinstance(n_predict, int) and n_predict > 0:
            k = n_predict
    if method not in MODELLED:
        raise _fail("method", method, "accepted by vLLM, but the planner does not model its memory and speed")
    if k is None:
        raise _fail("num_speculative_tokens", None, "required (the draft config has no n_predict)")
    if draft_tp is not None:
        if draft_tp not in (1, tp):
            raise _fail("draft_tensor_parallel_size", draft_tp, f"must be 1 or the target's tensor_parallel_size {tp}")
        if method == "draft_model" and draft_tp != tp and _vkey(v) >= (0, 15, 0):
            raise _fail("draft_tensor_parallel_size", draft_tp, f"vLLM {v} DraftModelProposer needs it equal to "
                        f"tensor_parallel_size {tp}")
    if method == "draft_model" and draft is not None and draft.num_attention_heads % tp:
        raise _fail("model", model, f"draft attention heads {draft.num_attention_heads} not divisible by TP {tp}")
    return SpecDecode(method=method, num_speculative_tokens=k, draft=draft, draft_tp=draft_tp, config=dict(config))


# ------------------------------------------------------------------------------------------- memory


def draft_tp_of(spec: SpecDecode, tp: int) -> int:
    """TP degree the drafter's weights are split over: a draft model at draft_tensor_parallel_size (default the
    target's); EAGLE heads and MTP layers run in the target's TP group (V1 builds them in the same worker)."""
    if spec.method == "draft_model":
        return spec.draft_tp or tp
    return tp


def _eagle_head_bytes(draft: ModelArch, target: ModelArch, *, tp: int, act_bytes: int,
                      linear_bytes_per_param: float, eagle3: bool, share_vocab: bool) -> int:
    """EAGLE / EAGLE-3 head (vllm llama_eagle.py / llama_eagle3.py): num_hidden_layers decoder layers (EAGLE-3's
    first one takes 2H inputs to q/k/v, plus hidden_norm), fc (EAGLE: 2H -> H; EAGLE-3: ReplicatedLinear over
    num_aux_hidden_states (3) x target_hidden_size -> H), final norm, its lm_head (EAGLE-3: draft_vocab_size rows,
    own weights) and the d2t int64 map when the draft vocab is smaller; embed_tokens is the target's (shared)
    unless PP > 1."""
    h, nh, nkv = draft.hidden_size, draft.num_attention_heads, draft.num_kv_heads
    hd, inter = draft.head_dim, draft.intermediate_size
    kv_div = min(tp, nkv)
    mats = 3 if draft.gated_mlp else 2
    q_in = 2 * h  # layer 0: [embeds, hidden] concatenated (EAGLE-3 qkv_input_size; EAGLE feeds fc's output)
    lin = 0.0
    other = 0.0
    for i in range(draft.num_layers):
        width = q_in if (eagle3 and i == 0) else h
        lin += nh * hd * width / tp + nkv * 2 * hd * width / kv_div + h * nh * hd / tp + mats * inter * h / tp
        other += (3 if (eagle3 and i == 0) else 2) * h  # input, post-attention (+ hidden_norm) RMSNorms
    other += h  # final norm
    raw = draft.raw
    if eagle3:
        aux = raw.get("num_aux_hidden_states") or len((raw.get("eagle_config") or {}).get(
            "eagle_aux_hidden_state_layer_ids") or ()) or 3
        tgt_h = raw.get("target_hidden_size") or h
        lin += aux * tgt_h * h  # fc, replicated on every rank
        dv = raw.get("draft_vocab_size") or draft.vocab_size
        other += cdiv(-(-dv // 64) * 64, tp) * h  # lm_head (own, reduced vocab), padded to 64 and split over TP
        d2t = dv * 8 if dv != target.vocab_size else 0
    else:
        lin += 2 * h * h  # fc (2H -> H), replicated; lm_head: the target's (EAGLE-1 checkpoints ship none)
        d2t = 0
    if not share_vocab:
        other += cdiv(padded_vocab(draft), tp) * h
    return int(lin * linear_bytes_per_param) + int(other * act_bytes) + d2t


def draft_weights_bytes(spec: SpecDecode, target: ModelArch, *, tp: int, act_bytes: int,
                        linear_bytes_per_param: float, pp: int = 1, dp: int = 1, ep: bool = False,
                        draft_linear_bytes_per_param: float | None = None) -> int:
    """Bytes the drafter adds to one GPU of the last PP stage (the others hold none).

    MTP: the target's MTP modules at the target's TP and quantization, embed/lm_head shared when PP = 1
    (params.mtp_rank_bytes). EAGLE heads: from their own config, unquantized unless the draft says otherwise
    (`draft_linear_bytes_per_param`, default `act_bytes`). Draft models: their full weights at draft TP
    (params.rank_weights, own embed and lm_head). n-gram / suffix: 0."""
    if spec.method in NO_DRAFT_MODEL:
        return 0
    share = pp == 1
    if spec.method == "mtp":
        src = spec.draft or target
        return mtp_rank_bytes(src, tp=tp, act_bytes=act_bytes, linear_bytes_per_param=linear_bytes_per_param,
                              dp=dp, ep=ep, share_vocab=share)
    draft = spec.draft
    if draft is None:
        raise ValueError(f"draft_weights_bytes: method {spec.method} without a draft config")
    dlin = draft_linear_bytes_per_param if draft_linear_bytes_per_param is not None else act_bytes
    if spec.method in ("eagle", "eagle3"):
        return _eagle_head_bytes(draft, target, tp=tp, act_bytes=act_bytes, linear_bytes_per_param=dlin,
                                 eagle3=spec.method == "eagle3", share_vocab=share)
    rw = rank_weights(draft, tp=draft_tp_of(spec, tp), pp=1, stage=0, act_bytes=act_bytes,
                      linear_bytes_per_param=dlin, rope_cache_bytes=0, include_vision=False)
    return rw.total_bytes


@dataclass(frozen=True)
class DraftKv:
    """The drafter's attention layers in the KV cache of the last PP stage (kvcache.kv_layout extra_layers)."""

    layers: int
    bytes_per_token_per_layer: int  # per GPU

    @property
    def bytes_per_token(self) -> int:
        return self.layers * self.bytes_per_token_per_layer


def draft_kv(spec: SpecDecode, target: ModelArch, *, tp: int, kv_bytes: int) -> DraftKv:
    """Attention layers the drafter adds to the KV-cache spec (V1 collects every Attention layer of the worker,
    drafter included, in get_kv_cache_spec): MTP one layer per MTP module with the target's attention (DeepSeek:
    one MLA latent of 576 per token, not split over TP); EAGLE heads and draft models their own layers at their
    own heads / TP. n-gram and suffix decoding add none."""
    if spec.method in NO_DRAFT_MODEL:
        return DraftKv(0, 0)
    if spec.method == "mtp":
        src = spec.draft or target
        return DraftKv(mtp_layer_count(src), attention_bytes_per_token_per_layer(src, tp, kv_bytes))
    draft = spec.draft
    assert draft is not None
    layers = sum(1 for k in draft.layer_types[:draft.num_layers] if k in ("full_attention", "sliding_attention",
                                                                          "chunked_attention"))
    return DraftKv(layers, attention_bytes_per_token_per_layer(draft, draft_tp_of(spec, tp), kv_bytes))


def lookahead_slots(spec: SpecDecode | None, version: str = "0.33.0") -> int:
    """KV slots reserved past the scheduled tokens per running request (allocate_slots num_lookahead_tokens):
    num_speculative_tokens for EAGLE / EAGLE-3 / MTP, and for draft models from 0.15 (uses_draft_model); 0 for
    n-gram and suffix decoding (vllm/config/vllm.py VllmConfig.num_lookahead_tokens; Scheduler.__init__ <= 0.25)."""
    if spec is None or spec.method in NO_DRAFT_MODEL:
        return 0
    if spec.method == "draft_model" and _vkey(known_version(version)) < (0, 15, 0):
        return 0
    return spec.num_speculative_tokens


def decode_query_len(spec: SpecDecode | None) -> int:
    """Tokens one decoding request puts in a target step: 1 + num_speculative_tokens (the CUDA-graph capture
    ceiling grows with it: max_cap = min(S x decode_query_len x 2, ceiling), vllm/config/vllm.py
    _set_cudagraph_sizes)."""
    return 1 + (spec.num_speculative_tokens if spec is not None else 0)


# --------------------------------------------------------------------------------------------- speed


def expected_tokens_per_step(acceptance_rate: float, k: int) -> float:
    """Tokens one target step emits with k drafted tokens each accepted with probability a (given the earlier
    ones were): 1 + a + ... + a^k = (1 - a^(k+1)) / (1 - a). This is vLLM's "mean acceptance length"
    (vllm/v1/spec_decode/metrics.py SpecDecodingLogging: 1 + accepted / drafts); vLLM's "draft acceptance rate"
    (accepted / drafted tokens) is (length - 1) / k, not a."""
    if not 0.0 <= acceptance_rate <= 1.0 or k < 0:
        raise ValueError(f"expected_tokens_per_step: a={acceptance_rate} k={k}")
    if acceptance_rate >= 1.0:
        return float(k + 1)
    return (1.0 - acceptance_rate ** (k + 1)) / (1.0 - acceptance_rate)


def acceptance_from_length(mean_length: float, k: int) -> float:
    """Per-token acceptance a whose chain of k drafts yields `mean_length` tokens per step (inverse of
    expected_tokens_per_step), to turn a published acceptance length into a pack param."""
    if not 1.0 <= mean_length <= k + 1:
        raise ValueError(f"acceptance_from_length: {mean_length} outside [1, {k + 1}]")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if expected_tokens_per_step(mid, k) < mean_length:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


ACCEPTANCE_PARAM = {"mtp": "spec_accept_rate_mtp", "eagle": "spec_accept_rate_eagle",
                    "eagle3": "spec_accept_rate_eagle3", "draft_model": "spec_accept_rate_draft_model",
                    "ngram": "spec_accept_rate_ngram", "ngram_gpu": "spec_accept_rate_ngram",
                    "suffix": "spec_accept_rate_ngram"}


def acceptance_rate(spec: SpecDecode, params: dict[str, Any]) -> float:
    """The pack's per-token acceptance rate for this method."""
    return float(params[ACCEPTANCE_PARAM[spec.method]])


@dataclass(frozen=True)
class DraftCost:
    """What one draft forward pass costs on one GPU of the last stage."""

    bytes_read: int  # weights read per pass (the drafter's, plus the shared lm_head for MTP / EAGLE)
    flops_per_token: float  # 2 x active parameters touched per drafted token
    passes: int  # sequential draft forward passes per step (k for EAGLE / MTP / draft models, 0 for n-gram)


def draft_cost(spec: SpecDecode, target: ModelArch, *, tp: int, act_bytes: int,
               linear_bytes_per_param: float, draft_weights: int) -> DraftCost:
    """Per-pass cost inputs. `draft_weights` is draft_weights_bytes(...) for this GPU. MTP and EAGLE passes also
    read the target's lm_head (shared) to sample; an MoE MTP layer touches top-k experts per token (bytes: all
    experts, an upper bound at batch >= E/top-k)."""
    if spec.method in NO_DRAFT_MODEL:
        return DraftCost(0, 0.0, 0)
    k = spec.num_speculative_tokens
    head = cdiv(padded_vocab(target), tp) * target.hidden_size * act_bytes
    if spec.method == "mtp":
        src = spec.draft or target
        per_layer = active_params(src) / max(1, src.num_layers)
        flops = 2 * (per_layer + 2 * src.hidden_size ** 2 + padded_vocab(src) * src.hidden_size) / tp
        return DraftCost(draft_weights + head, flops, k)
    draft = spec.draft
    assert draft is not None
    if spec.method in ("eagle", "eagle3"):  # EAGLE-3 samples from its own (reduced) lm_head, EAGLE from the target's
        shared_head = spec.method == "eagle"
        flops = 2 * draft_weights / act_bytes + (2 * padded_vocab(target) * target.hidden_size / tp
                                                 if shared_head else 0)
        return DraftCost(draft_weights + (head if shared_head else 0), flops, k)
    return DraftCost(draft_weights, 2 * active_params(draft) / draft_tp_of(spec, tp), k)


def draft_step_ms(cost: DraftCost, batch: int, *, bandwidth_bytes_per_s: float, peak_flops: float,
                  params: dict[str, Any]) -> float:
    """One draft forward pass over `batch` sequences (ms): the same roofline as perf.stage_decode_ms (weights at
    decode_bw_efficiency, FLOPs at compute_mfu) plus the pack's per-pass launch overhead."""
    if cost.passes == 0:
        return 0.0
    mem_s = cost.bytes_read / (bandwidth_bytes_per_s * params["decode_bw_efficiency"])
    compute_s = cost.flops_per_token * batch / (peak_flops * params["compute_mfu"])
    return (mem_s + compute_s) * 1000 + float(params["spec_draft_pass_overhead_ms"])


def spec_step_ms(target_step_ms: Callable[[int], float], batch: int, spec: SpecDecode,
                 draft_pass_ms: Callable[[int], float], params: dict[str, Any]) -> float:
    """One speculative step (ms): the target verifies batch x (k + 1) tokens in one step, the drafter runs its
    `passes` sequential forward passes over the batch, plus the proposer/rejection-sampler overhead.
    `target_step_ms(tokens)` is the target's step time for that many query tokens."""
    k = spec.num_speculative_tokens
    passes = 0 if spec.method in NO_DRAFT_MODEL else k
    return (target_step_ms(batch * (k + 1)) + passes * draft_pass_ms(batch)
            + float(params["spec_step_overhead_ms"]))


def _raw_speedup(target_step_ms: Callable[[int], float], batch: int, spec: SpecDecode,
                 draft_pass_ms: Callable[[int], float], params: dict[str, Any], acceptance: float | None) -> float:
    a = acceptance_rate(spec, params) if acceptance is None else acceptance
    step = spec_step_ms(target_step_ms, batch, spec, draft_pass_ms, params)
    return target_step_ms(batch) * expected_tokens_per_step(a, spec.num_speculative_tokens) / step


def speedup(target_step_ms: Callable[[int], float], batch: int, spec: SpecDecode,
            draft_pass_ms: Callable[[int], float], params: dict[str, Any], acceptance: float | None = None) -> float:
    """ITL without / with speculation at `batch` running sequences (> 1: speculation pays). Monotone: the gain
    at `batch` is the lowest gain at any batch up to it, so it only falls with concurrency. Deep in the
    compute-bound regime a roofline credits the drafter's fixed costs an amortisation that lifts the ratio again
    by a few percent; that rise is not credited (nothing in vLLM makes speculation pay more there)."""
    return min(_raw_speedup(target_step_ms, b, spec, draft_pass_ms, params, acceptance)
               for b in range(1, max(1, batch) + 1))


def spec_itl_ms(target_step_ms: Callable[[int], float], batch: int, spec: SpecDecode,
                draft_pass_ms: Callable[[int], float], params: dict[str, Any],
                acceptance: float | None = None) -> float:
    """Inter-token latency with speculation (ms): a speculative step (spec_step_ms) divided by the tokens it
    emits on average (expected_tokens_per_step), i.e. the plain step time over `speedup`."""
    return target_step_ms(batch) / speedup(target_step_ms, batch, spec, draft_pass_ms, params, acceptance)


def break_even_batch(target_step_ms: Callable[[int], float], spec: SpecDecode,
                     draft_pass_ms: Callable[[int], float], params: dict[str, Any], *, max_batch: int = 4096,
                     acceptance: float | None = None) -> int | None:
    """Smallest running batch at which speculation no longer pays (speedup <= 1), or None when it still pays at
    max_batch. Verification multiplies the tokens per step by k + 1, so once a step turns compute-bound the
    extra tokens cost more than the accepted ones save."""
    for b in range(1, max_batch + 1):
        if _raw_speedup(target_step_ms, b, spec, draft_pass_ms, params, acceptance) <= 1.0:
            return b  # the first batch where the raw gain fails is where the monotone envelope fails
    return None


def effective_batch_tokens(batch: int, spec: SpecDecode | None) -> int:
    """Query tokens a decode step of `batch` sequences carries (for token budgets and capture sizes)."""
    return batch * decode_query_len(spec)
