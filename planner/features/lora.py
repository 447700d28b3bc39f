"""Multi-LoRA serving (`--enable-lora`): the GPU memory vLLM pre-allocates for adapter slots, the transient memory of
its profile run, the per-decode-step cost of the adapters, and what vLLM refuses.

Pure: no I/O. Shapes are vLLM's own (vllm/lora/layers/*.py `create_lora_weights`, read from the published wheels of
every version the planner knows); the only empirical number (the per-module kernel overhead) is a rule-pack param.

How vLLM allocates (vllm/lora/model_manager.py `LoRAModelManager._create_lora_modules` >= 0.15, vllm/lora/models.py
before): at startup every supported module of the language model is replaced by a `*WithLoRA` wrapper whose
`create_lora_weights(max_loras, ...)` allocates zero-filled, stacked A and B tensors for `max_loras` slots at
`max_lora_rank`, in `lora_dtype` (auto: the model dtype; `LoRAConfig.verify_with_model_config`). These stay on the GPU
whatever adapters are loaded. "Supported" is every `LinearBase` module name of the model plus the model class's
`embedding_modules` (`vllm/lora/utils.py get_supported_lora_modules`, 0.8.5+; 0.6.4 used a per-class
`supported_lora_modules` list with the same content for Llama), or `--lora-target-modules` where given (0.19+).

Per wrapper, per slot, on one GPU (r = max_lora_rank, tp = TP size, fs = --fully-sharded-loras):

* Column-parallel (`ColumnParallelLinearWithLoRA`, `MergedColumnParallelLinearWithLoRA`,
  `MergedQKVParallelLinearWithLoRA`; vllm/lora/layers/column_parallel_linear.py): ONE lora_a PER SLICE,
  `(max_loras, 1, r or r/tp with fs, input_size)`, and one lora_b per slice, `(max_loras, 1, out_slice/tp, r)`.
  q/k/v are 3 slices (k and v split over min(tp, kv_heads) like `QKVParallelLinear`), gate/up 2 slices; a module
  that the model packs from one checkpoint name (Phi-3 `qkv_proj`, `gate_up_proj`) is 1 slice.
* Row-parallel (`RowParallelLinearWithLoRA`, row_parallel_linear.py): lora_a `(max_loras, 1, r, input_size/tp)`,
  lora_b `(max_loras, 1, out or out/tp with fs, r)`.
* Replicated (`ReplicatedLinearWithLoRA`, e.g. an MoE router `gate`): lora_a `r x in`, lora_b `out x r`, unsharded.
* Routed experts (`FusedMoEWithLoRA`, vllm/lora/layers/fused_moe.py, 0.15+): per local expert, w13 lora_a
  `2 x (r or r/tp) x H`, w2 lora_a `r x I_part`, w13 lora_b `2 x I_part x r`, w2 lora_b `(H or H/tp) x r`;
  3-D checkpoints (`is_3d_moe_weight`: gpt-oss, Qwen3-VL-MoE, Qwen3.5) use ONE w13 lora_a (`FusedMoE3DWithLoRA`).
  I_part = I/(tp*dp), or I with expert parallelism (then E/(tp*dp) local experts). 0.6.4 - 0.11 do not wrap experts.
* `embed_tokens` (`VocabParallelEmbeddingWithLoRA`, vocab_parallel_embedding.py): lora_a `(max_loras, V, r)` over
  the WHOLE vocabulary (not split by TP), lora_b `(max_loras, 1, H, r)`. Up to 0.11 lora_a has V + 256 rows
  (`lora_extra_vocab_size`, default 256) and an `embeddings_tensors (max_loras, 256, H)` in the model dtype is added.
* `lm_head` (`LogitsProcessorWithLoRA`, logits_processor.py): lora_a `(max_loras, 1, r, H)`, lora_b
  `(max_loras, 1, V_logits, r)` over the whole vocabulary. Up to 0.11 V_logits is rounded up to 256
  (`lora_vocab_padding_size`) and includes the model's extra 256 LoRA tokens, plus `embeddings_tensors
  (max_loras, 256, H)` in the model dtype.

Up to 0.11 the models that take `lora_extra_vocab_size` (llama.py and its subclasses, mixtral.py, granite.py, ...)
also build their base embedding with 256 x max_loras extra rows and their lm_head with 256 extra rows padded to
256: those base bytes are counted here too (planner/models/params.py does not know about LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner.features import LoraSpec
from planner.models.arch import ModelArch
from planner.models.params import VOCAB_PADDING, pp_layer_split
from planner.units import cdiv, round_up

LORA_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
LORA_EXTRA_VOCAB = 256  # LoRAConfig.lora_extra_vocab_size default (0.6.4 - 0.11; deprecated in 0.11, gone in 0.15)
LORA_VOCAB_PADDING = 256  # LoRAConfig.lora_vocab_padding_size (CUDA platform, 0.6.4 - 0.11)
FP32 = 4  # punica shrink buffers are float32 (punica_gpu.py add_lora_linear)

# Model types whose vLLM class declares `embedding_modules` with embed_tokens and lm_head, so both are wrapped by
# default (vLLM 0.33 llama.py and its subclasses mistral.py/phi3.py, qwen3.py, qwen3_moe.py, mixtral.py, granite.py,
# nemotron_h.py, exaone4.py, jamba.py, minicpm.py). Others (qwen2, gemma*, deepseek_v2, glm4_moe, gpt_oss, ...)
# declare none: only their linear layers get LoRA.
_EMBED_AND_HEAD = frozenset({"llama", "mistral", "phi3", "qwen3", "qwen3_moe", "mixtral", "granite", "nemotron_h",
                             "exaone4", "jamba", "minicpm"})
_EMBED_ONLY = frozenset({"cohere"})  # commandr.py: embed_tokens only
# Models that add lora_extra_vocab_size to their own embedding / lm_head (0.6.4 - 0.11: llama.py, mixtral.py,
# granite.py, commandr.py, minicpm.py, jamba.py, exaone4.py read lora_config.lora_extra_vocab_size).
_EXTRA_VOCAB_MODELS = frozenset({"llama", "mistral", "phi3", "mixtral", "granite", "cohere", "minicpm", "jamba",
                                 "exaone4"})
# packed_modules_mapping with ONE checkpoint name per merged module (phi3.py: "qkv_proj": ["qkv_proj"],
# "gate_up_proj": ["gate_up_proj"]) -> QKVParallelLinearWithLoRA / ColumnParallelLinearWithLoRA, one slice.
_SINGLE_SLICE = frozenset({"phi3"})
# FusedMoE3DWithLoRA models (is_3d_moe_weight = True in 0.15 - 0.33).
_MOE_3D = frozenset({"gpt_oss", "qwen3_vl_moe", "qwen3_5_moe", "qwen3_5"})

# --max-lora-rank values each version accepts (0.6.4 vllm/config.py LoRAConfig.__post_init__ possible_max_ranks;
# 0.8.5 / 0.11 the same check with 320 and 512; 0.15+ vllm/config/lora.py MaxLoRARanks Literal).
_RANKS_064 = (8, 16, 32, 64, 128, 256)
_RANKS_085 = (8, 16, 32, 64, 128, 256, 320, 512)
_RANKS_015 = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# Architectures whose vLLM class does not implement SupportsLoRA (vLLM refuses --enable-lora: 0.33
# LoRAConfig.verify_with_model_config "LoRA is not supported for ..."; older versions assert in the model runner).
# (architecture, first version it lacks LoRA, last version), checked class by class in each version's models/.
_NO_LORA: tuple[tuple[str, str, str], ...] = (
    ("FalconMambaForCausalLM", "0.6.4", "99"), ("MambaForCausalLM", "0.6.4", "99"),
    ("Mamba2ForCausalLM", "0.8.5", "99"), ("OrionForCausalLM", "0.6.4", "99"), ("Phi3VForCausalLM", "0.6.4", "99"),
    ("StableLmForCausalLM", "0.6.4", "99"), ("KimiK25ForConditionalGeneration", "0.15.0", "99"),
    ("Starcoder2ForCausalLM", "0.6.4", "0.20.0"), ("RWForCausalLM", "0.6.4", "0.25.0"),
    ("FalconForCausalLM", "0.6.4", "0.25.0"), ("MiniMaxM1ForCausalLM", "0.11.0", "0.20.0"),
    ("MllamaForConditionalGeneration", "0.6.4", "0.8.5"), ("DeepseekV2ForCausalLM", "0.6.4", "0.8.5"),
    ("DeepseekV3ForCausalLM", "0.6.4", "0.8.5"), ("Qwen2MoeForCausalLM", "0.6.4", "0.8.5"),
    ("Qwen3MoeForCausalLM", "0.8.5", "0.8.5"), ("Olmo2ForCausalLM", "0.8.5", "0.8.5"),
    ("InternLM2ForCausalLM", "0.6.4", "0.6.4"), ("Llama4ForConditionalGeneration", "0.8.5", "0.11.0"),
    ("GptOssForCausalLM", "0.11.0", "0.11.0"), ("Gemma4ForConditionalGeneration", "0.19.0", "0.19.0"),
)


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def allowed_ranks(version: str) -> tuple[int, ...]:
    """The --max-lora-rank values `version` accepts."""
    v = _v(version)
    if v < (0, 8):
        return _RANKS_064
    if v < (0, 15):
        return _RANKS_085
    return _RANKS_015


def lora_dtype_choices(version: str) -> tuple[str, ...]:
    """--lora-dtype choices (0.6.4 arg_utils also offered float32; 0.8.5+ LoRADType = auto|float16|bfloat16)."""
    return ("auto", "float16", "bfloat16", "float32") if _v(version) < (0, 8) else ("auto", "float16", "bfloat16")


def extra_vocab(version: str) -> int:
    """lora_extra_vocab_size as vLLM allocates it: 256 up to 0.11, gone from 0.15 on."""
    return LORA_EXTRA_VOCAB if _v(version) < (0, 15) else 0


def experts_wrapped(version: str) -> bool:
    """FusedMoE routed experts get LoRA tensors from 0.15 on (vllm/lora/layers/fused_moe.py); before, only linears."""
    return _v(version) >= (0, 15)


def lora_dtype_bytes(lora: LoraSpec, act_bytes: int) -> int:
    """Element size of the stacked tensors: --lora-dtype, auto = the model dtype."""
    return act_bytes if lora.lora_dtype == "auto" else LORA_DTYPE_BYTES[lora.lora_dtype]


# ------------------------------------------------------------------------------ module description


@dataclass(frozen=True)
class LoraModule:
    """One wrapped module of a decoder layer: its vLLM wrapper kind, full input width and full output slices.

    `kind`: "column" | "row" | "replicated" | "experts". `slices`: (full output size, "tp" | "kv" | "rep") per slice;
    "kv" slices split over min(tp, kv_heads) as QKVParallelLinear does. For "experts": in_features = H,
    slices = ((I, "tp"),), `experts` = routed experts, `w13` = number of w13 lora_a slices (2 gated 2-D, 1 3-D or
    non-gated), `gated` = whether w13 B holds 2 x I rows.
    """

    name: str
    kind: str
    in_features: int
    slices: tuple[tuple[int, str], ...]
    experts: int = 0
    w13: int = 0
    gated: bool = True
    top_k: int = 0


def _target(name: str, targets: tuple[str, ...] | None) -> bool:
    return targets is None or name in targets


def layer_modules(arch: ModelArch, layer: int, *, version: str,
                  target_modules: tuple[str, ...] | None = None) -> list[LoraModule]:
    """The modules of decoder layer `layer` that vLLM wraps with LoRA, with their vLLM module names."""
    h = arch.hidden_size
    kind = arch.layer_types[layer] if layer < len(arch.layer_types) else "full_attention"
    single = arch.model_type in _SINGLE_SLICE
    out: list[LoraModule] = []
    if kind in ("mamba", "linear_attention") and arch.ssm is not None:
        # Approximation: in_proj as one column-parallel slice, out_proj row-parallel (mamba_mixer2.py / qwen3_next.py
        # split in_proj into more slices, which adds (slices - 1) x r x H per slot).
        s = arch.ssm
        inner = s.intermediate_size or s.expand * h
        if s.kind == "gdn":
            inner = s.num_v_heads * s.v_head_dim
            out.append(LoraModule("in_proj_qkvz", "column", h,
                                  ((2 * s.num_k_heads * s.k_head_dim + 2 * inner, "tp"),)))
        else:
            out.append(LoraModule("in_proj", "column", h, ((2 * inner, "tp"),)))
        out.append(LoraModule("out_proj", "row", inner, ((h, "rep"),)))
    elif kind != "mlp" and arch.mla is not None:
        m = arch.mla
        nh = arch.num_attention_heads
        if m.q_lora_rank:
            # ReplicatedLinearWithLoRA has one slice (n_slices = 1) over the fused q_a + kv_a output
            out.append(LoraModule("fused_qkv_a_proj", "replicated", h,
                                  ((m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim, "rep"),)))
            out.append(LoraModule("q_b_proj", "column", m.q_lora_rank,
                                  ((nh * (m.qk_nope_head_dim + m.qk_rope_head_dim), "tp"),)))
        else:
            out.append(LoraModule("q_proj", "column", h, ((nh * (m.qk_nope_head_dim + m.qk_rope_head_dim), "tp"),)))
            out.append(LoraModule("kv_a_proj_with_mqa", "replicated", h,
                                  ((m.kv_lora_rank + m.qk_rope_head_dim, "rep"),)))
        out.append(LoraModule("kv_b_proj", "column", m.kv_lora_rank,
                              ((nh * (m.qk_nope_head_dim + m.v_head_dim), "tp"),)))
        out.append(LoraModule("o_proj", "row", nh * m.v_head_dim, ((h, "rep"),)))
    elif kind != "mlp":
        nh, nkv, hd, vhd = arch.num_attention_heads, arch.num_kv_heads, arch.head_dim, arch.v_head_dim
        q = nh * hd * (2 if arch.model_type == "qwen3_next" else 1)
        if single:  # QKVParallelLinearWithLoRA: one A, one B of q + k + v rows
            qkv: tuple[tuple[int, str], ...] = ((q, "tp"), (nkv * hd, "kv"), (nkv * vhd, "kv"))
            out.append(LoraModule("qkv_proj", "column_packed", h, qkv))
        else:  # MergedQKVParallelLinearWithLoRA: 3 slices
            out.append(LoraModule("qkv_proj", "column", h, ((q, "tp"), (nkv * hd, "kv"), (nkv * vhd, "kv"))))
        out.append(LoraModule("o_proj", "row", nh * vhd, ((h, "rep"),)))
    if not (arch.mixer_xor_mlp and kind != "mlp"):
        out += _mlp_modules(arch, layer, version=version, single=single)
    return [m for m in out if _target(m.name, target_modules)]


def _mlp_modules(arch: ModelArch, layer: int, *, version: str, single: bool) -> list[LoraModule]:
    h = arch.hidden_size
    moe = arch.moe
    is_moe = moe is not None and (not moe.moe_layers or layer in moe.moe_layers)
    out: list[LoraModule] = []
    if moe is not None and is_moe:
        if _v(version) >= (0, 8):  # router: a ReplicatedLinear (LinearBase) named "gate" -> ReplicatedLinearWithLoRA
            out.append(LoraModule("gate", "replicated", h, ((moe.num_experts, "rep"),)))
        if experts_wrapped(version):
            w13 = 1 if (arch.model_type in _MOE_3D or not arch.gated_mlp) else 2
            width = moe.latent_size or h
            out.append(LoraModule("experts", "experts", width, ((moe.moe_intermediate_size, "tp"),),
                                  experts=moe.num_experts, w13=w13, gated=arch.gated_mlp, top_k=moe.experts_per_token))
        if moe.shared_expert_intermediate_size:
            si = moe.shared_expert_intermediate_size
            if arch.gated_mlp:
                out.append(LoraModule("gate_up_proj", "column", h, ((si, "tp"), (si, "tp"))))
            else:
                out.append(LoraModule("up_proj", "column", h, ((si, "tp"),)))
            out.append(LoraModule("down_proj", "row", si, ((h, "rep"),)))
        return out
    inter = arch.intermediate_size
    if inter == 0:
        return out
    if arch.gated_mlp and not single:  # MergedColumnParallelLinearWithLoRA: 2 slices
        out.append(LoraModule("gate_up_proj", "column", h, ((inter, "tp"), (inter, "tp"))))
    elif arch.gated_mlp:  # Phi-3: ColumnParallelLinearWithLoRA over the merged gate_up, one slice
        out.append(LoraModule("gate_up_proj", "column_packed", h, ((inter, "tp"), (inter, "tp"))))
    else:
        out.append(LoraModule("up_proj", "column", h, ((inter, "tp"),)))
    out.append(LoraModule("down_proj", "row", inter, ((h, "rep"),)))
    return out


def _slice_rows(size: int, shard: str, *, tp: int, kv_div: int) -> int:
    if shard == "tp":
        return size // tp
    if shard == "kv":
        return size // kv_div
    return size


def module_slot_elements(m: LoraModule, r: int, *, tp: int, kv_div: int, fully_sharded: bool, dp: int = 1,
                         ep: bool = False) -> int:
    """Elements of one slot (A + B) of module `m` on one GPU, as its vLLM wrapper allocates them."""
    if m.kind == "experts":
        group = tp * dp
        local = cdiv(m.experts, group) if ep else m.experts
        i_part = m.slices[0][0] if ep else m.slices[0][0] // group
        moe_tp = 1 if ep else group  # FusedMoE's own TP size (collapsed to 1 under EP)
        ra = r // moe_tp if fully_sharded else r
        hb = m.in_features // moe_tp if fully_sharded else m.in_features
        w13_b_rows = (2 if m.gated else 1) * i_part
        per_expert = m.w13 * ra * m.in_features + r * i_part + w13_b_rows * r + hb * r
        return local * per_expert
    if m.kind == "row":
        out = m.slices[0][0] // tp if fully_sharded else m.slices[0][0]
        return r * (m.in_features // tp) + out * r
    if m.kind == "replicated":
        return len(m.slices) * r * m.in_features + sum(s for s, _ in m.slices) * r
    ra = r // tp if fully_sharded else r
    rows = sum(_slice_rows(s, k, tp=tp, kv_div=kv_div) for s, k in m.slices)
    n_a = 1 if m.kind == "column_packed" else len(m.slices)
    return n_a * ra * m.in_features + rows * r


# ------------------------------------------------------------------------------ memory


def embeds_wrapped(arch: ModelArch, target_modules: tuple[str, ...] | None = None) -> tuple[bool, bool]:
    """(embed_tokens wrapped, lm_head wrapped) by default for this model class."""
    embed = arch.model_type in _EMBED_AND_HEAD or arch.model_type in _EMBED_ONLY
    head = arch.model_type in _EMBED_AND_HEAD
    return embed and _target("embed_tokens", target_modules), head and _target("lm_head", target_modules)


def lm_head_lora_vocab(arch: ModelArch, version: str) -> int:
    """Rows of the lm_head lora_b: LogitsProcessor.vocab_size (V, plus 256 extra tokens for the models that add
    them), rounded up to 256 up to 0.11 (`lora_vocab_padding_size`)."""
    extra = extra_vocab(version)
    if not extra:
        return arch.vocab_size
    v = arch.vocab_size + (extra if arch.model_type in _EXTRA_VOCAB_MODELS else 0)
    return round_up(v, LORA_VOCAB_PADDING)


def lora_weights_bytes(arch: ModelArch, lora: LoraSpec, *, tp: int, pp: int, stage: int, act_bytes: int,
                       version: str, dp: int = 1, ep: bool = False,
                       target_modules: tuple[str, ...] | None = None) -> int:
    """GPU bytes vLLM pre-allocates at startup for the LoRA slots on one GPU of PP stage `stage` (bytes).

    Stacked A/B tensors of every wrapped module of the stage's layers, plus embed_tokens on the first stage and
    lm_head on the last where the model class wraps them, plus (0.6.4 - 0.11) the extra-vocabulary tensors and
    base rows. `act_bytes`: the model dtype size (lora_dtype auto). `target_modules`: --lora-target-modules
    (vLLM module names, e.g. ("qkv_proj", "o_proj")), None = every supported module.
    """
    if tp < 1 or pp < 1 or not 0 <= stage < pp:
        raise ValueError(f"lora_weights_bytes: bad layout tp={tp} pp={pp} stage={stage}")
    r, slots = lora.max_lora_rank, lora.max_loras
    b = lora_dtype_bytes(lora, act_bytes)
    kv_div = min(tp, arch.num_kv_heads) if arch.num_kv_heads > 0 else tp
    elements = 0
    for i in pp_layer_split(arch.num_layers, pp)[stage]:
        for m in layer_modules(arch, i, version=version, target_modules=target_modules):
            elements += module_slot_elements(m, r, tp=tp, kv_div=kv_div, fully_sharded=lora.fully_sharded, dp=dp,
                                             ep=ep)
    h, extra = arch.hidden_size, extra_vocab(version)
    embed, head = embeds_wrapped(arch, target_modules)
    model_dtype = 0  # elements held in the model dtype (embeddings_tensors, extra base rows)
    if stage == 0 and embed:
        elements += (arch.vocab_size + extra) * r + h * r  # lora_a over the whole vocab (+ extra), lora_b H x r
        if extra:
            model_dtype += slots * extra * h  # VocabParallelEmbeddingWithLoRA.embeddings_tensors
    if stage == pp - 1 and head:
        elements += r * h + lm_head_lora_vocab(arch, version) * r
        if extra:
            model_dtype += slots * extra * h  # LogitsProcessorWithLoRA.embeddings_tensors
    total = elements * slots * b + model_dtype * act_bytes
    return total + extra_base_rows_bytes(arch, lora, tp=tp, pp=pp, stage=stage, act_bytes=act_bytes, version=version)


def extra_base_rows_bytes(arch: ModelArch, lora: LoraSpec, *, tp: int, pp: int, stage: int, act_bytes: int,
                          version: str) -> int:
    """Base-weight rows that --enable-lora adds up to 0.11 (llama.py LlamaModel: vocab_size + 256 x max_loras
    embedding rows; LlamaForCausalLM: lm_head over V + 256 padded to 256 instead of 64), per GPU (bytes)."""
    extra = extra_vocab(version)
    if not extra or arch.model_type not in _EXTRA_VOCAB_MODELS:
        return 0
    h = arch.hidden_size
    rows = 0
    if stage == 0:
        rows += round_up(extra * lora.max_loras, VOCAB_PADDING)
    if stage == pp - 1 and (not arch.tie_word_embeddings or pp > 1):
        rows += (round_up(arch.vocab_size, LORA_VOCAB_PADDING) + extra) - round_up(arch.vocab_size, VOCAB_PADDING)
    return cdiv(rows, tp) * h * act_bytes


def lora_activation_bytes(arch: ModelArch, lora: LoraSpec, *, tokens: int, version: str) -> int:
    """Extra transient GPU bytes of the profile run with LoRA, at the MLP peak (bytes).

    The dummy adapters of the profile run (v1/worker/lora_model_runner_mixin.py `maybe_setup_dummy_loras`, rank
    min(max_lora_rank, 8)) are built on the CPU (`create_dummy_lora_weights(..., "cpu")`) and copied into the
    pre-allocated slots: no GPU memory of their own. Punica's metadata (token -> slot maps) is O(tokens) int32.
    What remains is the float32 shrink buffer each wrapped linear allocates for its forward
    (punica_gpu.py `add_lora_linear`: `(n_slices, tokens, r)` float32) -- alive next to the MLP intermediate
    when gate_up (2 slices) runs -- and for wrapped experts the MoE LoRA intermediate (tokens x top_k x r per w13
    slice). Small (MiB) next to the forward peak, but counted.
    """
    r = lora.max_lora_rank
    buf = (2 if arch.gated_mlp else 1) * tokens * r * FP32
    if arch.moe is not None and experts_wrapped(version):
        w13 = 1 if (arch.model_type in _MOE_3D or not arch.gated_mlp) else 2
        buf = max(buf, w13 * tokens * arch.moe.experts_per_token * r * FP32)
    return buf


def lora_cudagraph_cases(lora: LoraSpec, version: str, *, specialize_active_lora: bool = False) -> int:
    """How many graphs vLLM captures per capture size with LoRA on (the CUDA-graph memory multiplier).

    0.15+ `CudagraphDispatcher` with `cudagraph_specialize_lora=True` (default) captures each size with and
    without LoRA: 2; with --specialize-active-lora (0.19+) one more per captured count (`get_captured_lora_counts`:
    powers of 2 up to max_loras, and max_loras + 1). 0.11 and older: 1 (one graph, LoRA always applied).
    """
    if _v(version) < (0, 15):
        return 1
    if specialize_active_lora and _v(version) >= (0, 19):
        n = lora.max_loras
        return 1 + len([k for k in range(1, n + 2) if (k & (k - 1)) == 0 or k == n + 1])
    return 2


# ------------------------------------------------------------------------------ speed


@dataclass(frozen=True)
class LoraStepCost:
    """Per-decode-step cost of LoRA on one GPU.

    bytes_read: adapter bytes the punica kernels stream per step for `active` distinct adapters (each active slot's
      A and B at the full max_lora_rank: the kernels run over the padded rank; embedding lora_a is gathered per
      token and not counted). flops_per_token: 2 x r x (in + out) per slice of each wrapped module (experts: top_k
      of them; lm_head included). wrapped_modules: modules that run a shrink + expand per step;
      overhead_s: wrapped_modules x params["lora_kernel_overhead_us"].
    """

    bytes_read: int
    flops_per_token: int
    wrapped_modules: int
    overhead_s: float


def lora_step_cost(arch: ModelArch, lora: LoraSpec, *, active: int, tp: int, pp: int, stage: int, act_bytes: int,
                   version: str, params: dict[str, Any], dp: int = 1, ep: bool = False,
                   target_modules: tuple[str, ...] | None = None) -> LoraStepCost:
    """Per-decode-step LoRA cost on one GPU of PP stage `stage` with `active` distinct adapters in the batch."""
    r = lora.max_lora_rank
    b = lora_dtype_bytes(lora, act_bytes)
    kv_div = min(tp, arch.num_kv_heads) if arch.num_kv_heads > 0 else tp
    n_active = max(0, min(active, lora.max_loras))
    slot_elems = 0
    flops = 0
    modules = 0
    for i in pp_layer_split(arch.num_layers, pp)[stage]:
        for m in layer_modules(arch, i, version=version, target_modules=target_modules):
            slot_elems += module_slot_elements(m, r, tp=tp, kv_div=kv_div, fully_sharded=lora.fully_sharded, dp=dp,
                                               ep=ep)
            modules += 1
            if m.kind == "experts":
                one = LoraModule(m.name, "experts", m.in_features, m.slices, experts=1, w13=m.w13, gated=m.gated)
                flops += 2 * m.top_k * module_slot_elements(one, r, tp=tp, kv_div=kv_div, fully_sharded=False,
                                                            dp=dp, ep=False)
            else:
                flops += 2 * module_slot_elements(m, r, tp=tp, kv_div=kv_div, fully_sharded=lora.fully_sharded)
    embed, head = embeds_wrapped(arch, target_modules)
    if stage == pp - 1 and head:
        head_elems = r * arch.hidden_size + lm_head_lora_vocab(arch, version) * r
        slot_elems += head_elems
        flops += 2 * head_elems
        modules += 1
    if stage == 0 and embed:
        slot_elems += arch.hidden_size * r  # lora_b only; lora_a rows are gathered per token
        modules += 1
    overhead = modules * float(params["lora_kernel_overhead_us"]) * 1e-6
    return LoraStepCost(bytes_read=n_active * slot_elems * b, flops_per_token=flops, wrapped_modules=modules,
                        overhead_s=overhead)


# ------------------------------------------------------------------------------ refusals


def lora_problems(arch: ModelArch, lora: LoraSpec, version: str, *, tp: int = 1) -> list[str]:
    """What `vllm serve --enable-lora` refuses at startup for this model and these flags, one message each."""
    out: list[str] = []
    ranks = allowed_ranks(version)
    if lora.max_lora_rank not in ranks:
        out.append(f"--max-lora-rank {lora.max_lora_rank}: vLLM {version} accepts only {', '.join(map(str, ranks))}")
    if lora.max_loras < 1:
        out.append(f"--max-loras {lora.max_loras}: must be >= 1")
    if lora.max_cpu_loras is not None and lora.max_cpu_loras < lora.max_loras:
        out.append(f"--max-cpu-loras {lora.max_cpu_loras}: must be >= --max-loras ({lora.max_loras})")
    choices = lora_dtype_choices(version)
    if lora.lora_dtype not in choices:
        out.append(f"--lora-dtype {lora.lora_dtype}: vLLM {version} accepts {', '.join(choices)}")
    v = _v(version)
    for name, first, last in _NO_LORA:
        if name in arch.architectures and _v(first) <= v <= _v(last):
            out.append(f"--enable-lora: {name} does not support LoRA in vLLM {version} (no SupportsLoRA)")
            break
    _, head = embeds_wrapped(arch)
    if head:
        limit = 257024 if v < (0, 19) else 258048  # LogitsProcessorWithLoRA.create_lora_weights
        vocab = arch.vocab_size + (extra_vocab(version) if arch.model_type in _EXTRA_VOCAB_MODELS else 0)
        if vocab > limit:
            out.append(f"--enable-lora: vocabulary {vocab:,} > {limit:,}, the largest lm_head vLLM {version} "
                       "wraps with LoRA")
    if lora.fully_sharded and tp > 1 and lora.max_lora_rank % tp:
        out.append(f"--fully-sharded-loras with --max-lora-rank {lora.max_lora_rank}: the rank must divide by "
                   f"the tensor-parallel size {tp} (vllm.distributed.utils.divide)")
    return out
