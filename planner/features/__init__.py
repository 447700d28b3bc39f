"""Serving features that change memory and speed (issue 19): LoRA, speculative decoding, CPU weight offload,
prefix caching and multimodal limits.

Each feature's accounting is a pure module here (lora, speculative, offload, multimodal); `ServingFeatures` is what
one plan runs with, built from the pinned flags by planner/features/pins.py (the only part that does I/O: it loads
a draft model's config). The memory and speed models take the numbers these modules compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.models.arch import ModelArch


@dataclass(frozen=True)
class LoraSpec:
    """`--enable-lora` and its sizes, with vLLM's defaults filled in (vllm/config/lora.py LoRAConfig)."""

    max_loras: int = 1
    max_lora_rank: int = 16
    max_cpu_loras: int | None = None  # None: vLLM uses max_loras
    lora_dtype: str = "auto"  # auto: the model's dtype
    fully_sharded: bool = False  # --fully-sharded-loras


@dataclass(frozen=True)
class SpecDecode:
    """`--speculative-config`, normalised the way vLLM's SpeculativeConfig reads it."""

    method: str  # ngram | draft_model | eagle | eagle3 | mtp (every *_mtp spelling maps to mtp) | suffix
    num_speculative_tokens: int
    draft: ModelArch | None = None  # the EAGLE head or draft model's config (None: n-gram, MTP from the target)
    draft_tp: int | None = None  # draft_tensor_parallel_size, when given
    config: dict[str, Any] = field(default_factory=dict)  # the JSON as given (it goes into the serve command as is)


@dataclass(frozen=True)
class ServingFeatures:
    """What one plan serves with beyond the bare model."""

    lora: LoraSpec | None = None
    speculative: SpecDecode | None = None
    cpu_offload_gb: float = 0.0
    prefix_caching: bool = False  # resolved: the pin, else the version's default for this model
    prefix_hit_rate: float = 0.0
    mm_limits: dict[str, int] | None = None  # --limit-mm-per-prompt, counts per modality (None: vLLM's default)


NONE = ServingFeatures()
