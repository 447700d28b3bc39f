"""Multimodal limits, encoder cache and the profile run's encoder term (issue 19).

vLLM (V1 engine, 0.8+) profiles a vision model in two steps (vllm/v1/worker/gpu_model_runner.py profile_run):

1. unless --skip-mm-profiling, it runs the encoder once on `items` dummy items of the modality with the most
   tokens per item, each at the model's maximum size (MultiModalBudget / compute_encoder_budget), and keeps the
   outputs in `encoder_cache["tmp"]`; the batched dummy inputs stay referenced by the same function;
2. `_dummy_run(max_num_batched_tokens)` and the sampler run with those outputs still held; the cache is
   cleared only after them.

So the torch peak is max(encoder forward peak, decoder peak + held outputs + held inputs), where "decoder peak"
is what planner/memory.py activation_peak_bytes computes. `mm_profile_bytes` returns the part above the decoder
peak, so the calibrated decoder terms are not counted twice.

    embeds per item      the family's rule (planner/models/mm_encoders.yaml + config.json)
    budget               max(max_num_batched_tokens, embeds per item)           (encoder compute = cache size)
    items                max(1, min(budget // embeds, max_num_seqs x per-prompt items))
    held                 items x embeds x hidden x b  +  items x pixel values x b (vLLM casts inputs to the dtype)
    encoder peak         ViT tokens x (mlp_matrices x I_vit/TP + mm_encoder_hidden_factor x H_vit) x b + inputs

Pure except `load_mm_encoders` (reads the YAML once); the other functions take its result as `data`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from planner.models.arch import ModelArch

MM_ENCODERS_PATH = Path(__file__).resolve().parents[1] / "models" / "mm_encoders.yaml"
KNOWN_MODALITIES = ("image", "video", "audio")  # vLLM's modality names across the planner's versions
_FIRST_V1 = Version("0.8.0")  # V0 (0.6.4) runs the encoder inside the dummy forward: not modelled
_BUDGET_PER_PROMPT = Version("0.11.0")  # MultiModalBudget: per-prompt items capped at max_model_len // tokens


@functools.lru_cache(maxsize=2)
def load_mm_encoders(path: Path = MM_ENCODERS_PATH) -> dict[str, Any]:
    """The data file as plain dicts (the only I/O in this module)."""
    from planner.yamlio import load_yaml_file, to_plain

    return to_plain(load_yaml_file(path))


@dataclass(frozen=True)
class MMItem:
    """One dummy item at the model's maximum size."""

    modality: str
    embeds: int  # encoder-output embeddings (what the encoder budget and cache count)
    vit_tokens: int  # tokens the vision transformer runs on
    input_values: int  # pixel values vLLM moves to the GPU (cast to the model dtype)


@dataclass(frozen=True)
class MMProfile:
    """The encoder part of vLLM's profile run on one GPU."""

    item: MMItem
    items: int  # dummy items encoded in one batch
    encoder_budget_tokens: int  # min(encoder compute budget, encoder cache size)
    encoder_cache_tokens: int
    held_bytes: int  # outputs + inputs still referenced during the decoder dummy run and the sampler
    encoder_peak_bytes: int  # transient peak of the encoder forward, inputs included


def _pick(entries: list[dict[str, Any]], version: str) -> dict[str, Any]:
    v = Version(version)
    chosen = entries[0]
    for e in entries:
        if Version(str(e["from"])) <= v:
            chosen = e
    return chosen


def family_of(arch: ModelArch) -> str | None:
    """Which mm_encoders.yaml family describes this model's vision input (None: not modelled)."""
    vc = arch.raw.get("vision_config")
    if not isinstance(vc, dict) or not vc.get("hidden_size"):
        return None
    vtype = str(vc.get("model_type") or "")
    archs = " ".join(arch.architectures)
    if "Qwen2_5_VL" in archs:
        return "qwen2_5_vl"
    if vtype.startswith("llama4"):
        return "llama4"
    if vtype.startswith("siglip") and ("Gemma3" in archs or arch.model_type.startswith("gemma3")):
        return "gemma3"
    if "Pixtral" in archs or "Mistral3" in archs or vtype == "pixtral":
        return "pixtral"
    return None


def default_limit(version: str, data: dict[str, Any]) -> int:
    """vLLM's per-prompt count for a modality --limit-mm-per-prompt does not name."""
    return int(_pick(data["limit_default"], version)["count"])


def _count(value: Any) -> Any:
    """A limit value: an int, or (0.11+) {"count": n, "width": .., "height": ..} (vllm/config/multimodal.py)."""
    return value.get("count") if isinstance(value, dict) else value


def mm_limits_problems(arch: ModelArch, limits: dict[str, Any] | None, version: str,
                       data: dict[str, Any]) -> list[str]:
    """What is wrong with a --limit-mm-per-prompt value for this model: unknown or unsupported modalities, counts
    that are not non-negative integers. vLLM reads the JSON in MultiModalConfig.limit_per_prompt and the model's
    processor accepts only its own modalities (BaseProcessingInfo.get_supported_mm_limits)."""
    if not limits:
        return []
    out = []
    fam = family_of(arch)
    supported = data["families"][fam]["modalities"] if fam else None
    for key, value in limits.items():
        count = _count(value)
        if isinstance(value, dict) and Version(version) < _BUDGET_PER_PROMPT:
            out.append(f"--limit-mm-per-prompt: {key}: the object form {value!r} needs vLLM 0.11.0 or later "
                       f"(planned {version}); give a count")
        if isinstance(count, bool) or not isinstance(count, int):
            out.append(f"--limit-mm-per-prompt: {key}: expected a whole number of items, got {value!r}")
        elif count < 0:
            out.append(f"--limit-mm-per-prompt: {key}: {count} is negative; use 0 to disable the modality")
        if not arch.is_multimodal and fam is None:
            out.append(f"--limit-mm-per-prompt: {key}: {arch.name} takes no multimodal input (text-only model)")
        elif supported is not None and key not in supported:
            out.append(f"--limit-mm-per-prompt: {key}: {arch.name} takes {', '.join(supported)} only")
        elif supported is None and key not in KNOWN_MODALITIES:
            out.append(f"--limit-mm-per-prompt: {key}: not a vLLM modality ({', '.join(KNOWN_MODALITIES)})")
    return out


def effective_limits(arch: ModelArch, limits: dict[str, Any] | None, version: str,
                     data: dict[str, Any]) -> dict[str, int]:
    """Per-modality counts vLLM runs with: the given ones, else the version's default (0 for a negative or
    unusable value, which mm_limits_problems reports)."""
    fam = family_of(arch)
    if fam is None:
        return {}
    out = {}
    for modality in data["families"][fam]["modalities"]:
        count = _count((limits or {}).get(modality, default_limit(version, data)))
        out[modality] = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
    return out


def tower_skipped(arch: ModelArch, limits: dict[str, Any] | None, version: str, data: dict[str, Any]) -> bool:
    """True when every modality is limited to 0 and vLLM then builds no vision tower for this family (no tower
    weights). Qwen2-VL/2.5-VL: `self.visual = None` unless an image or video limit is set (vllm qwen2_vl.py
    Qwen2VLForConditionalGeneration.__init__); other families: not checked, the tower is assumed loaded."""
    fam = family_of(arch)
    return (fam is not None and bool(data["families"][fam].get("text_only_skips_tower"))
            and not any(effective_limits(arch, limits, version, data).values()))


def max_item(arch: ModelArch, modality: str, *, max_model_len: int, version: str, data: dict[str, Any]) -> MMItem:
    """The dummy item of `modality` with the most embeddings, per the family's rule (mm_encoders.yaml)."""
    fam = family_of(arch)
    if fam is None:
        raise ValueError(f"{arch.name}: no multimodal encoder model")
    spec = data["families"][fam]
    vc = arch.raw["vision_config"]
    patch = int(vc.get("patch_size") or 14)
    chans = int(vc.get("num_channels") or vc.get("in_chans") or vc.get("in_channels") or 3)
    if spec["rule"] == "fixed":  # gemma-3: one SigLIP crop, avg-pooled to mm_tokens_per_image
        size = int(vc["image_size"])
        embeds = int(arch.raw.get("mm_tokens_per_image") or 256)
        return MMItem(modality, embeds, (size // patch) ** 2, chans * size * size)
    if spec["rule"] == "tiles":  # llama-4: 1 x max_patches canvas + a global tile; pixel shuffle per tile
        size = int(vc["image_size"])
        ipc = arch.raw.get("image_processor_config") or {}
        tiles = int(ipc.get("max_patches") or spec["max_patches"])
        if tiles > 1 and ipc.get("add_global_tile", spec["add_global_tile"]):
            tiles += 1
        per_tile = (size // patch) ** 2
        ratio = float(vc.get("pixel_shuffle_ratio") or 0.5)
        return MMItem(modality, tiles * int(per_tile * ratio * ratio), tiles * (per_tile + 1),
                      tiles * chans * size * size)
    if spec["rule"] == "longest_edge":  # pixtral / mistral-3: one image at longest_edge^2, spatial merge
        edge = int(vc.get("max_image_size") or vc.get("image_size") or spec["longest_edge"])
        merge = int(arch.raw.get("spatial_merge_size") or vc.get("spatial_merge_size") or 1)
        side = math.ceil(edge / patch)
        return MMItem(modality, (side // merge) ** 2, side * side, chans * edge * edge)
    if spec["rule"] == "max_pixels":  # qwen2.5-vl: smart_resize to max_pixels, temporal patches of 2 frames
        merge = int(vc.get("spatial_merge_size") or 2)
        temporal = int(vc.get("temporal_patch_size") or 2)
        per_patch = chans * temporal * patch * patch
        if modality == "image":
            patches = _grid_patches(int(spec["max_pixels"]), patch * merge, patch)
            return MMItem(modality, patches // merge**2, patches, patches * per_patch)
        video = _pick(spec["video"], version)
        patches = _grid_patches(int(video["max_pixels"]), patch * merge, patch)  # per temporal grid step
        per_grid = patches // merge**2
        frames = max(1, min(int(video["max_frames"]), temporal * (max_model_len // per_grid)))
        grid_t = max((frames + frames % temporal) // temporal, 1)
        return MMItem(modality, grid_t * per_grid, grid_t * patches, grid_t * patches * per_patch)
    raise ValueError(f"mm_encoders.yaml: {fam}: unknown rule {spec['rule']!r}")


def _grid_patches(max_pixels: int, factor: int, patch: int) -> int:
    """Patches of the largest square smart_resize returns under max_pixels (transformers qwen2_vl
    image_processing smart_resize: sides floored to multiples of `factor` once the area exceeds max_pixels)."""
    side = math.floor(math.sqrt(max_pixels) / factor) * factor
    return (side // patch) ** 2


def _budget_items(item_embeds: int, limit: int, *, max_num_batched_tokens: int, max_model_len: int,
                  max_num_seqs: int, chunked_prefill: bool, version: str) -> tuple[int, int]:
    """(encoder budget tokens, dummy items): vllm/multimodal/budget.py MultiModalBudget._get_max_items with
    v1/core/encoder_cache_manager.py compute_mm_encoder_budget (both budgets = max(T, tokens per item));
    before 0.11 the per-prompt cap and the chunked-prefill cap are absent (gpu_model_runner.profile_run)."""
    budget = max(max_num_batched_tokens, item_embeds)
    per_prompt, reqs = limit, max_num_seqs
    if Version(version) >= _BUDGET_PER_PROMPT:
        per_prompt = max(1, min(limit, max_model_len // item_embeds))
        if not chunked_prefill:
            reqs = min(reqs, max_num_batched_tokens // item_embeds)
    return budget, max(1, min(budget // item_embeds, reqs * per_prompt))


def mm_profile(arch: ModelArch, limits: dict[str, Any] | None, *, max_num_batched_tokens: int, max_model_len: int,
               max_num_seqs: int, act_bytes: int, tp: int, version: str, params: dict[str, Any],
               data: dict[str, Any], chunked_prefill: bool = True, skip_mm_profiling: bool = False,
               encoder_tp_mode: str = "weights") -> MMProfile | None:
    """The encoder batch vLLM's profile run encodes and what it costs on one GPU; None when vLLM profiles no
    encoder (text model, family not modelled, every limit 0, --skip-mm-profiling, or the V0 engine)."""
    if Version(version) < _FIRST_V1 or skip_mm_profiling:
        return None
    lim = effective_limits(arch, limits, version, data)
    active = [m for m, n in lim.items() if n > 0]
    if not active:
        return None  # compute_mm_encoder_budget: "All non-text modalities ... disabled"; budget 0, no encoder run
    cands = [max_item(arch, m, max_model_len=max_model_len, version=version, data=data) for m in active]
    item = max(cands, key=lambda c: c.embeds)  # MultiModalBudget.get_modality_with_max_tokens (first on ties)
    budget, items = _budget_items(item.embeds, lim[item.modality], max_num_batched_tokens=max_num_batched_tokens,
                                  max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                                  chunked_prefill=chunked_prefill, version=version)
    vc = arch.raw["vision_config"]
    h_vit = int(vc["hidden_size"])
    i_vit = int(vc.get("intermediate_size") or 4 * h_vit)
    gated = family_of(arch) in ("pixtral", "qwen2_5_vl")  # SiLU-gated ViT MLPs (pixtral.py, qwen2_5_vl.py)
    data_mode = encoder_tp_mode == "data" and tp > 1
    local_items = math.ceil(items / tp) if data_mode else items  # run_dp_sharded_vision_model splits the batch
    i_shard = i_vit if data_mode else i_vit / tp
    inputs = items * item.input_values * act_bytes
    vit = local_items * item.vit_tokens
    forward = vit * ((3 if gated else 2) * i_shard + params["mm_encoder_hidden_factor"] * h_vit) * act_bytes
    outputs = items * item.embeds * arch.hidden_size * act_bytes  # gathered on every rank in data mode
    return MMProfile(item=item, items=items, encoder_budget_tokens=budget, encoder_cache_tokens=budget,
                     held_bytes=int(outputs + inputs), encoder_peak_bytes=int(forward + inputs))


def encoder_cache_tokens(arch: ModelArch, limits: dict[str, Any] | None, *, max_num_batched_tokens: int,
                         max_model_len: int, version: str, data: dict[str, Any]) -> int:
    """Encoder cache size in embeddings: max(max_num_batched_tokens, largest item), 0 when no modality is
    enabled (compute_mm_encoder_budget; the cache holds encoder outputs, not KV)."""
    if Version(version) < _FIRST_V1:
        return 0
    lim = effective_limits(arch, limits, version, data)
    sizes = [max_item(arch, m, max_model_len=max_model_len, version=version, data=data).embeds
             for m, n in lim.items() if n > 0]
    return max(max_num_batched_tokens, *sizes) if sizes else 0


def mm_profile_bytes(decoder_peak_bytes: int, profile: MMProfile | None) -> int:
    """Bytes the encoder adds to the profile run's transient peak above the decoder peak (planner/memory.py
    activation_peak_bytes): max(decoder + held, encoder forward) - decoder. The held outputs and inputs are
    alive during `_dummy_run` and `_dummy_sampler_run` (profile_run clears encoder_cache after both)."""
    if profile is None:
        return 0
    return max(profile.held_bytes, profile.encoder_peak_bytes - decoder_peak_bytes)
