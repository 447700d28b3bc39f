"""check-log: read a real vLLM startup log, re-plan the same configuration, and compare.

parse_vllm_log() is pure (text in, ReportedLaunch out) and never raises anything but InputError.
check_log() is the use case: it reads the file, loads the model and plans through planner.app; when the
log's model cannot be loaded it reports what the log says alone (`predicted` all null, with a note).

Log formats handled (shared/spec/vllm-accounting.md sections 1.2, 1.3, 1.7, 3, 4.1):

* V1, 0.7 - 0.19+: "Model loading took X GiB" (older: "Loading model weights took X GB" from
  gpu_model_runner), "Available KV cache memory: X GiB", "GPU KV cache size: N tokens",
  "Maximum concurrency for N tokens per request: Xx", "# GPU blocks: N" (0.7), the DEBUG lines
  "Memory profiling takes ... Total non KV cache memory ...; torch peak memory increase ...;
  non-torch forward increase memory ...; weights memory ..." and "Free memory on device (F/T GiB)
  on startup. Desired GPU memory utilization is (U, R GiB). Actual usage is W GiB for weight, A GiB
  for peak activation, N GiB for non-torch memory, and C GiB for CUDAGraph memory", "Estimated CUDA
  graph memory: X GiB", "Graph capturing finished in N secs, took X GiB", "num_gpu_blocks is: N",
  the version banner, "non-default args: {...}" and the engine config line ("Initializing a V1 LLM
  engine (vX) with config: ... max_seq_len=..., tensor_parallel_size=..., ...").
* V0 (0.5 - 0.8): "Loading model weights took X GB" (vLLM divides by 2**30, so the number is GiB
  whatever the printed unit says), "# GPU blocks: N, # CPU blocks: M", the one-line
  "Memory profiling results: total_gpu_memory=...GiB initial_memory_usage=... peak_torch_memory=...
  non_torch_memory=... kv_cache_size=... gpu_memory_utilization=..." (0.6.4) and the multi-line
  table of 0.6.5+ ("model weights take", "non_torch_memory", "PyTorch activation peak memory",
  "available_kv_cache_memory" / "the rest of the memory reserved for KV Cache is").
* A pasted `vllm serve MODEL --flag value ...` command line (with `\\` continuations).
* Serving features (issue 19), from the same three sources: enable_lora, max_loras, max_lora_rank,
  max_cpu_loras, lora_dtype, cpu_offload_gb, enable_prefix_caching, limit_mm_per_prompt and
  speculative_config. The engine config line prints the last as a repr, `SpeculativeConfig(method='eagle3',
  model='...', num_spec_tokens=3)` (V1) or `SpeculativeConfig(draft_model='...', num_spec_tokens=5)` (V0);
  it is mapped back to the JSON vLLM takes ({"method", "model", "num_speculative_tokens"}). The pre-0.8
  `--speculative-model M --num-speculative-tokens K` are mapped the same way. A feature the planner cannot
  plan here (e.g. a draft model not available offline) is dropped from the re-plan with a warning.

Per-rank lines carry prefixes like `(Worker_TP0 pid=..)`, `(Worker_PP1 pid=..)`,
`(VllmWorker rank=2 pid=..)`, `(VllmWorkerProcess pid=..)` (a V0 non-driver worker),
`(EngineCore pid=..)` / `(EngineCore_DP0 pid=..)` / `(APIServer pid=..)` (the driver; counted as
rank 0). For per-GPU quantities the rank-0 value is taken when printed, else the first printed
one; the KV cache memory is the minimum over the printed ranks (vLLM sizes the pool from the
smallest rank). Ranks that disagree are kept in `per_rank`.

Choices (what the contract view `reported` shows):
* activation_peak_gib: the V1 "torch peak memory increase" / "GiB for peak activation", the V0
  "PyTorch activation peak memory". The V0 0.6.4 line prints only `peak_torch_memory`, which
  includes the weights (available KV = total x util - peak_torch - non_torch); there the
  activation is derived as peak_torch_memory - weights and a note says so.
* cuda_graph_gib: the memory the capture actually took ("Graph capturing finished ... took",
  "GiB for CUDAGraph memory"); the pre-capture "Estimated CUDA graph memory" is kept separately
  and used only when nothing else is printed (with a note).
* kv_cache_tokens: as printed; when vLLM printed only "# GPU blocks: N" it is derived as
  N x block_size (16, vLLM's CUDA default, unless the log shows another) with a note.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import InputError
from planner.files import read_bounded

MAX_LOG_BYTES = 64 * 2**20
DEFAULT_BLOCK_SIZE = 16  # vLLM's CUDA default (vllm-accounting.md section 2.4)
GiB = 2**30

CONTRACT_KEYS = ("vllm_version", "model", "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization",
                 "max_model_len", "weights_gib", "activation_peak_gib", "non_torch_gib", "cuda_graph_gib",
                 "kv_cache_gib", "kv_cache_tokens", "max_concurrency")
MEMORY_KEYS = ("weights_gib", "activation_peak_gib", "non_torch_gib", "cuda_graph_gib", "kv_cache_gib")


@dataclass(frozen=True)
class ReportedLaunch:
    """What one vLLM startup log says. None = the log is silent. Sizes in GiB as printed (per GPU)."""

    source: str
    engine: str | None = None  # "V0" | "V1"
    vllm_version: str | None = None
    model: str | None = None
    gpu_name: str | None = None  # from a fused-MoE config path ("device_name=NVIDIA_L4")
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    data_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    enforce_eager: bool | None = None
    enable_prefix_caching: bool | None = None
    enable_expert_parallel: bool | None = None
    enable_lora: bool | None = None
    max_loras: int | None = None
    max_lora_rank: int | None = None
    max_cpu_loras: int | None = None
    lora_dtype: str | None = None
    cpu_offload_gb: float | None = None
    speculative_config: dict[str, Any] | None = None  # the JSON --speculative-config would take
    limit_mm_per_prompt: dict[str, Any] | None = None
    sampler: str | None = None  # "fused" | "sort": how the workers' top-p/top-k sampler runs, when the log says
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    block_size: int | None = None
    weights_gib: float | None = None
    weights_unit: str | None = None  # "GiB" or "GB" as printed (the value is GiB either way)
    activation_peak_gib: float | None = None
    peak_torch_memory_gib: float | None = None  # V0 0.6.4: weights + activation
    non_torch_gib: float | None = None
    cuda_graph_gib: float | None = None  # measured by the capture
    cuda_graph_estimated_gib: float | None = None  # profiled before the capture (0.19+)
    kv_cache_gib: float | None = None
    total_non_kv_cache_gib: float | None = None
    kv_cache_tokens: int | None = None
    gpu_blocks: int | None = None
    cpu_blocks: int | None = None
    max_concurrency: float | None = None
    max_concurrency_tokens: int | None = None  # the N of "Maximum concurrency for N tokens per request"
    total_gpu_memory_gib: float | None = None
    free_memory_on_startup_gib: float | None = None
    requested_memory_gib: float | None = None
    initial_memory_usage_gib: float | None = None
    usable_memory_gib: float | None = None  # V0 "the current vLLM instance can use"
    per_rank: dict[str, dict[str, float]] = field(default_factory=dict)  # quantity -> rank label -> value
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- lines

_ANSI = re.compile(r"(?:\x1b|\^\[)\[[0-9;]*m")
_COMPOSE = re.compile(r"^[\w.-]{1,64}\s+\|\s")  # docker compose: "qwen3-1  | ..."
_PREFIX = re.compile(r"\(([A-Za-z][\w]{0,40})(?: rank=(\d{1,6}))? pid=(\d{1,10})\)")
_NUM = r"(\d{1,9}(?:\.\d{1,9})?)"
_INT = r"(\d{1,3}(?:,\d{3}){1,5}|\d{1,15})"
_VERSION = r"v?(\d{1,4}\.\d{1,4}[\w.+-]{0,60})"


@dataclass(frozen=True)
class _Rank:
    label: str
    rank0: bool


def _rank_of(line: str) -> _Rank:
    m = _PREFIX.search(line)
    if not m:
        return _Rank("driver", True)
    name, rank, pid = m.group(1), m.group(2), m.group(3)
    if rank is not None:
        return _Rank(f"rank{int(rank)}", int(rank) == 0)
    if name.startswith("Worker"):
        return _Rank(name, all(int(d) == 0 for d in re.findall(r"\d+", name)))
    if name.startswith(("VllmWorker", "RayWorker")):  # V0 non-driver worker process
        return _Rank(f"{name}:{pid}", False)
    return _Rank(name, True)  # EngineCore*, APIServer, LLMEngine: the driver


def _f(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _i(s: str) -> int | None:
    try:
        return int(s.replace(",", ""))
    except ValueError:
        return None


# (keyword that must be in the line, regex, [(field, group, converter)]) for per-rank / engine quantities.
_Conv = Callable[[str], Any]
_QUANTITIES: tuple[tuple[str, re.Pattern[str], tuple[tuple[str, int, _Conv], ...]], ...] = tuple(
    (kw, re.compile(rx), fields) for kw, rx, fields in (
        ("took", r"(?:Model loading|Loading model weights) took " + _NUM + r" ?(GiB|GB)\b",
         (("weights_gib", 1, _f), ("weights_unit", 2, str))),
        ("model weights take", r"model weights take[s]?\s+" + _NUM + r"\s*(GiB)", (("weights_gib", 1, _f),
                                                                                   ("weights_unit", 2, str))),
        ("weights memory:", r"weights memory: " + _NUM + r"\s*(GiB)",
         (("weights_gib", 1, _f), ("weights_unit", 2, str))),
        ("GiB for weight", _NUM + r" (GiB) for weight", (("weights_gib", 1, _f), ("weights_unit", 2, str))),
        ("torch peak memory increase", r"torch peak memory increase: " + _NUM + r"\s*GiB",
         (("activation_peak_gib", 1, _f),)),
        ("GiB for peak activation", _NUM + r" GiB for peak activation", (("activation_peak_gib", 1, _f),)),
        ("PyTorch activation peak memory", r"PyTorch activation peak memory(?: takes)?\s+" + _NUM + r"\s*GiB",
         (("activation_peak_gib", 1, _f),)),
        ("peak_torch_memory=", r"peak_torch_memory=" + _NUM + r"\s*GiB", (("peak_torch_memory_gib", 1, _f),)),
        ("non-torch forward increase memory", r"non-torch forward increase memory: " + _NUM + r"\s*GiB",
         (("non_torch_gib", 1, _f),)),
        ("GiB for non-torch memory", _NUM + r" GiB for non-torch memory", (("non_torch_gib", 1, _f),)),
        ("non_torch_memory", r"non_torch_memory(?:=|\s+takes\s+|\s+)" + _NUM + r"\s*GiB", (("non_torch_gib", 1, _f),)),
        ("Graph capturing finished", r"Graph capturing finished in \d{1,9}(?:\.\d{1,9})? secs?, took " + _NUM +
         r" GiB", (("cuda_graph_gib", 1, _f),)),
        ("GiB for CUDAGraph memory", _NUM + r" GiB for CUDAGraph memory", (("cuda_graph_gib", 1, _f),)),
        ("Estimated CUDA graph memory", r"Estimated CUDA graph memory: " + _NUM + r" GiB",
         (("cuda_graph_estimated_gib", 1, _f),)),
        ("Available KV cache memory", r"Available KV cache memory: " + _NUM + r" GiB", (("kv_cache_gib", 1, _f),)),
        ("kv_cache_size=", r"kv_cache_size=" + _NUM + r"\s*GiB", (("kv_cache_gib", 1, _f),)),
        ("available_kv_cache_memory", r"available_kv_cache_memory\s+" + _NUM + r"\s*GiB", (("kv_cache_gib", 1, _f),)),
        ("reserved for KV Cache", r"the rest of the memory reserved for KV Cache is " + _NUM + r"\s*GiB",
         (("kv_cache_gib", 1, _f),)),
        ("Total non KV cache memory", r"Total non KV cache memory: " + _NUM + r"\s*GiB",
         (("total_non_kv_cache_gib", 1, _f),)),
        ("GPU KV cache size", r"GPU KV cache size: " + _INT + r" tokens", (("kv_cache_tokens", 1, _i),)),
        ("GPU blocks", r"GPU blocks: " + _INT + r"\b", (("gpu_blocks", 1, _i),)),
        ("num_gpu_blocks is", r"num_gpu_blocks is: " + _INT + r"\b", (("gpu_blocks", 1, _i),)),
        ("CPU blocks", r"CPU blocks: " + _INT + r"\b", (("cpu_blocks", 1, _i),)),
        ("Maximum concurrency for", r"Maximum concurrency for " + _INT + r" tokens per request: " + _NUM + r"x",
         (("max_concurrency_tokens", 1, _i), ("max_concurrency", 2, _f))),
        ("Free memory on device", r"Free memory on device \(" + _NUM + "/" + _NUM + r" GiB\)",
         (("free_memory_on_startup_gib", 1, _f), ("total_gpu_memory_gib", 2, _f))),
        ("total_gpu_memory", r"total_gpu_memory(?:=|\s+)" + _NUM + r"\s*GiB", (("total_gpu_memory_gib", 1, _f),)),
        ("Desired GPU memory utilization", r"Desired GPU memory utilization is \(" + _NUM + ", " + _NUM + r" GiB\)",
         (("requested_memory_gib", 2, _f),)),
        ("initial_memory_usage=", r"initial_memory_usage=" + _NUM + r"\s*GiB", (("initial_memory_usage_gib", 1, _f),)),
        ("instance can use", r"the current vLLM instance can use\s+" + _NUM + r"\s*GiB",
         (("usable_memory_gib", 1, _f),)),
    )
)
_ENGINE_WIDE = {"kv_cache_tokens", "gpu_blocks", "cpu_blocks", "max_concurrency", "max_concurrency_tokens"}
_MIN_OVER_RANKS = {"kv_cache_gib"}
_TEXT_FIELDS = {"weights_unit"}

# Serving-feature settings (planner.schemas.Pinned fields of the same names)
FEATURE_KEYS = ("enable_lora", "max_loras", "max_lora_rank", "max_cpu_loras", "lora_dtype", "cpu_offload_gb",
                "speculative_config", "limit_mm_per_prompt")
_LORA_DTYPES = ("auto", "float16", "bfloat16")
_MAX_JSON_CHARS = 4000  # a --speculative-config / --limit-mm-per-prompt value longer than this is not read
# SpeculativeConfig.__repr__ in the engine config line: V1 (method=, model=, num_spec_tokens=), V0 (draft_model=,
# num_spec_tokens=). The body has no parentheses; each field is a quoted string, None or an int.
_SPEC_REPR = re.compile(r"speculative_config=SpeculativeConfig\(([^()]{0,1000})\)")
_SPEC_FIELD = re.compile(r"(\w{1,40})=('[^']{0,500}'|\w{1,40})")
# A dict value inside a non-default args line that ast.literal_eval could not read as a whole (e.g. because of
# `'dtype': torch.bfloat16`): the flat {...} right after the key.
_ARGS_DICT_VALUE = re.compile(r"'(speculative_config|limit_mm_per_prompt)':\s*(\{[^{}]{0,2000}\})")
# Settings, by source priority: non-default args (3) > engine config line (2) > `vllm serve` command (1) > others (0)
_SETTING_KEYS = ("model", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
                 "gpu_memory_utilization", "max_model_len", "dtype", "quantization", "kv_cache_dtype",
                 "enforce_eager", "enable_prefix_caching", "enable_expert_parallel", "max_num_seqs",
                 "max_num_batched_tokens", "block_size", "sampler", *FEATURE_KEYS)
_CONFIG_KV = re.compile(r"(?<![\w.])(model|dtype|max_seq_len|tensor_parallel_size|pipeline_parallel_size|"
                        r"data_parallel_size|quantization|enforce_eager|kv_cache_dtype|block_size|"
                        r"enable_prefix_caching|max_num_seqs|max_num_batched_tokens)=('[^']{0,500}'|[^,\s]{1,200})")
_ARGS_KV = re.compile(r"'(\w{1,60})':\s*('[^']{0,500}'|[\w.+-]{1,60})")
_CLI_FLAGS = {"--tensor-parallel-size": "tensor_parallel_size", "-tp": "tensor_parallel_size",
              "--pipeline-parallel-size": "pipeline_parallel_size", "-pp": "pipeline_parallel_size",
              "--data-parallel-size": "data_parallel_size", "-dp": "data_parallel_size",
              "--gpu-memory-utilization": "gpu_memory_utilization", "--max-model-len": "max_model_len",
              "--dtype": "dtype", "--quantization": "quantization", "-q": "quantization",
              "--kv-cache-dtype": "kv_cache_dtype", "--max-num-seqs": "max_num_seqs",
              "--max-num-batched-tokens": "max_num_batched_tokens", "--block-size": "block_size",
              "--model": "model", "--max-loras": "max_loras", "--max-lora-rank": "max_lora_rank",
              "--max-cpu-loras": "max_cpu_loras", "--lora-dtype": "lora_dtype", "--cpu-offload-gb": "cpu_offload_gb",
              "--speculative-config": "speculative_config", "-sc": "speculative_config",
              "--limit-mm-per-prompt": "limit_mm_per_prompt",
              "--speculative-model": "speculative_model", "--num-speculative-tokens": "num_speculative_tokens"}
_CLI_BOOL = {"--enforce-eager": ("enforce_eager", True), "--enable-prefix-caching": ("enable_prefix_caching", True),
             "--no-enable-prefix-caching": ("enable_prefix_caching", False),
             "--enable-expert-parallel": ("enable_expert_parallel", True), "-ep": ("enable_expert_parallel", True),
             "--disable-prefix-caching": ("enable_prefix_caching", False),
             "--enable-lora": ("enable_lora", True), "--no-enable-lora": ("enable_lora", False),
             "--disable-lora": ("enable_lora", False)}
# The sampler each worker announces (vllm/v1/sample/ops/topk_topp_sampler.py). "PyTorch-native" is the vocabulary
# sort in the 0.8-0.11 wordings; newer logs that only say FlashInfer is disabled or unavailable may fall back to
# the Triton kernel or to the sort, so they decide nothing.
_SAMPLER_LINES = (("Using FlashInfer for top-p & top-k sampling", "fused"),
                  ("Using Triton for top-p & top-k sampling", "fused"),
                  ("with Triton for top-p & top-k sampling", "fused"),
                  ("Falling back to the PyTorch-native implementation of top-p & top-k sampling", "sort"),
                  ("Falling back to default sampling implementation", "sort"))
_VERSION_RES = (
    ("version", re.compile(r"(?:█|\bvLLM(?: API server)?)\s+version\s+" + _VERSION)),
    ("LLM engine (v", re.compile(r"Initializing an? (?:V\d )?LLM engine \(" + _VERSION + r"\)")),
)
_V1_MARKERS = ("V1 LLM engine", "EngineCore", "VLLM_USE_V1=1", "GPU KV cache size", "Available KV cache memory",
               "gpu_model_runner.py", "kv_cache_utils.py", "Worker_TP", "Worker_PP", "gpu_worker.py")
_V0_MARKERS = ("Initializing an LLM engine", "V0 LLM engine", "CPU blocks", "Memory profiling results",
               "VllmWorkerProcess", "the current vLLM instance can use")


def _human_int(s: str) -> int | None:
    """vLLM's --max-model-len spellings: 32768, 32k (=32000), 32K (=32768), 1M, 25.6k."""
    m = re.fullmatch(r"(\d{1,12}(?:\.\d{1,6})?)([kKmMgG]?)", s.strip())
    if not m:
        return None
    num, unit = float(m.group(1)), m.group(2)
    mult = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "K": 1024, "M": 1024**2, "G": 1024**3}[unit]
    v = num * mult
    return int(v) if v == int(v) else None


def _setting(key: str, raw: Any) -> Any:
    """Validate one setting value (from any source) to its type; None when it is not a sane value."""
    if isinstance(raw, str):
        raw = raw.strip().strip("'\"").rstrip("…")
    if raw is None or raw == "None":
        return None
    if key in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "max_num_seqs",
               "max_num_batched_tokens", "block_size", "max_model_len"):
        if isinstance(raw, bool):
            return None
        v = raw if isinstance(raw, int) else _human_int(str(raw)) if key == "max_model_len" else _i(str(raw))
        return v if isinstance(v, int) and 1 <= v <= 10**9 else None
    if key == "gpu_memory_utilization":
        if isinstance(raw, bool):
            return None
        v = float(raw) if isinstance(raw, (int, float)) else _f(str(raw))
        return v if v is not None and 0 < v <= 1 else None
    if key in ("enforce_eager", "enable_prefix_caching", "enable_expert_parallel", "enable_lora"):
        if isinstance(raw, bool):
            return raw
        return {"true": True, "false": False}.get(str(raw).lower())
    if key in ("max_loras", "max_lora_rank", "max_cpu_loras"):
        v = None if isinstance(raw, bool) else raw if isinstance(raw, int) else _i(str(raw))
        return v if isinstance(v, int) and 1 <= v <= 100_000 else None
    if key == "cpu_offload_gb":
        if isinstance(raw, bool):
            return None
        v = float(raw) if isinstance(raw, (int, float)) else _f(str(raw))
        return v if v is not None and math.isfinite(v) and 0 <= v <= 65536 else None
    if key == "lora_dtype":
        v = str(raw).removeprefix("torch.")
        return v if v in _LORA_DTYPES else None
    if key == "speculative_config":
        return _speculative(raw)
    if key == "limit_mm_per_prompt":
        return _mm_limits(raw)
    if not isinstance(raw, str) or not raw or len(raw) > 300:
        return None
    if key == "dtype":
        return raw.removeprefix("torch.")
    return raw


def _json_object(raw: Any) -> dict[str, Any] | None:
    """A dict given as a dict (non-default args) or as JSON text (a pasted command); None otherwise."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.startswith("{") or len(raw) > _MAX_JSON_CHARS:
        return None
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return d if isinstance(d, dict) else None


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 500)


def _speculative(raw: Any) -> dict[str, Any] | None:
    """The --speculative-config JSON object: flat, string keys, scalar values, at most 40 keys."""
    d = _json_object(raw)
    if d is None or not d or len(d) > 40:
        return None
    out = {str(k): v for k, v in d.items() if isinstance(k, str) and len(k) <= 60 and _scalar(v)}
    n = out.get("num_speculative_tokens")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024):
        return None
    return out if out.get("method") or out.get("model") else None


def _spec_from_repr(body: str) -> dict[str, Any] | None:
    """{"method", "model", "num_speculative_tokens"} from the body of SpeculativeConfig(...) in a config line."""
    fields = {k: v.strip("'") for k, v in _SPEC_FIELD.findall(body)}
    out: dict[str, Any] = {}
    draft = fields.get("draft_model")  # V0: the draft, or "[ngram]" for prompt lookup
    if draft is not None and draft != "None":
        out.update({"method": "ngram"} if draft == "[ngram]" else {"model": draft})
    if fields.get("method", "None") != "None":
        out["method"] = fields["method"]
    if fields.get("model", "None") != "None":
        out["model"] = fields["model"]
    n = _i(fields.get("num_spec_tokens", ""))
    if n is not None:
        out["num_speculative_tokens"] = n
    return _speculative(out)


def _spec_from_legacy(model: Any, tokens: Any) -> dict[str, Any] | None:
    """vLLM < 0.8: --speculative-model M (or "[ngram]") --num-speculative-tokens K, as the JSON 0.8+ takes."""
    if not isinstance(model, str) or model in ("", "None"):
        return None
    out: dict[str, Any] = {"method": "ngram"} if model in ("[ngram]", "ngram") else {"model": model}
    n = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else _i(str(tokens))
    if n is not None:
        out["num_speculative_tokens"] = n
    return _speculative(out)


def _mm_limits(raw: Any) -> dict[str, Any] | None:
    """--limit-mm-per-prompt: {"image": 2} (JSON or dict; 0.11+ also {"image": {"count": 2, ...}}) or the 0.6.x
    key=value form "image=2,video=1". Modality names are short words; counts 0..10**6."""
    d = _json_object(raw)
    if d is None and isinstance(raw, str) and 0 < len(raw) <= 500:
        pairs = [p.partition("=") for p in raw.split(",")]
        if all(eq for _, eq, _ in pairs):
            d = {k.strip(): _i(v.strip()) for k, _, v in pairs}
    if not d or len(d) > 20:
        return None
    out: dict[str, Any] = {}
    for k, v in d.items():
        count = v.get("count") if isinstance(v, dict) else v
        if not (isinstance(k, str) and re.fullmatch(r"\w{1,40}", k)) or isinstance(count, bool) \
                or not isinstance(count, int) or not 0 <= count <= 10**6:
            return None
        out[k] = v if isinstance(v, dict) and all(_scalar(x) for x in v.values()) and len(v) <= 10 else count
    return out


def _args_dict(line: str) -> dict[str, Any]:
    start, end = line.find("{"), line.rfind("}")
    if start < 0 or end <= start:
        return {}
    body = line[start:end + 1]
    if len(body) <= 100_000:
        try:
            d = ast.literal_eval(body)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            d = None
        if isinstance(d, dict):
            return {str(k): v for k, v in d.items()}
    out: dict[str, Any] = {k: v for k, v in _ARGS_KV.findall(body)}
    for k, sub in _ARGS_DICT_VALUE.findall(body):
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            out[k] = ast.literal_eval(sub)
    return out


def _command_settings(words: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        i = words.index("serve") + 1
    except ValueError:
        return out
    while i < len(words):
        w = words[i]
        flag, eq, val = w.partition("=")
        if flag.startswith("--"):
            flag = flag.replace("_", "-")  # vLLM takes --max_lora_rank for --max-lora-rank
        if flag in _CLI_BOOL:
            key, v = _CLI_BOOL[flag]
            out.setdefault(key, v)
        elif flag in _CLI_FLAGS:
            if not eq:
                i += 1
                val = words[i] if i < len(words) else ""
            out.setdefault(_CLI_FLAGS[flag], val)
        elif not w.startswith("-") and "model" not in out and i == words.index("serve") + 1:
            out["model"] = w
        i += 1
    legacy = _spec_from_legacy(out.pop("speculative_model", None), out.pop("num_speculative_tokens", None))
    if legacy is not None:
        out.setdefault("speculative_config", legacy)
    return out


def _command_words(lines: list[str], i: int) -> list[str]:
    text = lines[i]
    j = i
    while text.rstrip().endswith("\\") and j + 1 < len(lines) and j - i < 50:
        j += 1
        text = text.rstrip()[:-1] + " " + lines[j]
    text = text[text.find("vllm serve"):][:10_000]
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def parse_vllm_log(text: str, source: str) -> ReportedLaunch:
    """Extract what a vLLM startup log says about its configuration and memory.

    Raises:
        InputError: no vLLM startup line was found ("no vLLM startup lines found in SOURCE").
    """
    lines = [_COMPOSE.sub("", _ANSI.sub("", ln)) for ln in text.splitlines()]
    observed: dict[str, list[tuple[_Rank, int, Any]]] = {}  # field -> (rank, pattern priority, value)
    settings: dict[str, tuple[int, Any]] = {}
    version: str | None = None
    engine_explicit: str | None = None
    v1 = v0 = False
    gpu_name: str | None = None
    hits = 0

    def put(key: str, priority: int, raw: Any) -> None:
        v = _setting(key, raw)
        if v is not None and (key not in settings or settings[key][0] < priority):
            settings[key] = (priority, v)

    for idx, line in enumerate(lines):
        if not line.strip():
            continue
        matched = False
        for prio, (kw, rx, fields) in enumerate(_QUANTITIES):
            if kw not in line:
                continue
            for m in rx.finditer(line):
                rank = _rank_of(line)
                for name, group, conv in fields:
                    val = conv(m.group(group))
                    if val is not None:
                        observed.setdefault(name, []).append((rank, prio, val))
                        matched = True
                if kw in ("Maximum concurrency for",) and m.group(1):
                    put("max_model_len", 0, _i(m.group(1)))
                if kw == "Desired GPU memory utilization":
                    put("gpu_memory_utilization", 1, m.group(1))
        if version is None:
            for kw, rx in _VERSION_RES:
                m = rx.search(line) if kw in line else None
                if m:
                    version, matched = m.group(1).rstrip(".,;:"), True
                    break
        if "non-default args" in line:
            put("tensor_parallel_size", -1, 1)  # the line lists every non-default arg: absent = the default, 1
            put("pipeline_parallel_size", -1, 1)
            args = _args_dict(line)
            for k, v in args.items():
                if k in _SETTING_KEYS:
                    put(k, 3, v)
                elif k == "model_tag":
                    put("model", 2, v)
            put("speculative_config", 3, _spec_from_legacy(args.get("speculative_model"),
                                                           args.get("num_speculative_tokens")))
            matched = True
        if ("with config" in line or "LLM engine" in line) and "=" in line:
            for k, v in _CONFIG_KV.findall(line):
                put("max_model_len" if k == "max_seq_len" else k, 2, v)
                matched = True
            m = _SPEC_REPR.search(line) if "SpeculativeConfig(" in line else None
            if m:
                put("speculative_config", 2, _spec_from_repr(m.group(1)))
        if "Using max model len" in line:
            m = re.search(r"Using max model len " + _INT, line)
            if m:
                put("max_model_len", 1, _i(m.group(1)))
                matched = True
        if "gpu_memory_utilization" in line:
            m = re.search(r"gpu_memory_utilization(?:=|\s+)" + _NUM + r"\b", line)
            if m:
                put("gpu_memory_utilization", 1, m.group(1))
                matched = True
        if "increase --gpu-memory-utilization from" in line:
            m = re.search(r"increase --gpu-memory-utilization from " + _NUM, line)
            if m:
                put("gpu_memory_utilization", 0, m.group(1))
        if "vllm serve" in line:
            for k, v in _command_settings(_command_words(lines, idx)).items():
                put(k, 1, v)
        if "sampling" in line:
            for text, path in _SAMPLER_LINES:
                if text in line:
                    put("sampler", 0, path)
        if gpu_name is None and "device_name=" in line:
            m = re.search(r"device_name=([A-Za-z0-9_-]{2,80})", line)
            if m:
                gpu_name = m.group(1).replace("_", " ")
        if "V1 LLM engine" in line:
            engine_explicit = engine_explicit or "V1"
        elif "Initializing an LLM engine" in line or "V0 LLM engine" in line:
            engine_explicit = engine_explicit or "V0"
        v1 = v1 or any(mk in line for mk in _V1_MARKERS)
        v0 = v0 or any(mk in line for mk in _V0_MARKERS)
        hits += matched

    if not hits:
        raise InputError(f"no vLLM startup lines found in {source}")
    values: dict[str, Any] = {}
    per_rank: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for name, obs in observed.items():
        if name in _TEXT_FIELDS or name in _ENGINE_WIDE:
            values[name] = min(obs, key=lambda o: o[1])[2]  # the preferred line kind, first printed
            continue
        # per rank: the value from the most specific line kind ("Model loading took 27.7183" over "27.72 GiB for
        # weight"); ranks differ only when the values differ at the 2 decimals vLLM's summaries print
        by_label: dict[str, Any] = {}
        for rank, _prio, val in sorted(obs, key=lambda o: o[1]):
            by_label.setdefault(rank.label, val)
        if len({round(v, 2) for v in by_label.values()}) > 1:
            per_rank[name] = by_label
        if name in _MIN_OVER_RANKS:
            values[name] = min(by_label.values())
        else:
            best = min(obs, key=lambda o: (not o[0].rank0, o[1]))  # rank 0 first, then the line kind, then order
            values[name] = best[2]
            if not best[0].rank0 and name in MEMORY_KEYS:
                notes.append(f"{name}: rank 0 did not print it; taking {best[0].label}'s value")
    for name, ranks in per_rank.items():
        rule = "the smallest" if name in _MIN_OVER_RANKS else "rank 0 (or the first printed)"
        notes.append(f"{name} differs across ranks ({', '.join(f'{k}={v}' for k, v in ranks.items())}); "
                     f"taking {rule}")
    engine = engine_explicit or ("V1" if v1 else "V0" if v0 else None)
    return ReportedLaunch(source=source, engine=engine, vllm_version=version, gpu_name=gpu_name,
                          **{k: v for k, (_, v) in settings.items()}, **values, per_rank=per_rank,
                          notes=tuple(notes))


# ------------------------------------------------------------------------------------------- comparison


def reported_view(r: ReportedLaunch) -> tuple[dict[str, Any], list[str]]:
    """The contract keys as the log states them (derived where vLLM printed an equivalent), and notes."""
    notes: list[str] = []
    out: dict[str, Any] = {k: getattr(r, k) for k in CONTRACT_KEYS}
    if out["activation_peak_gib"] is None and r.peak_torch_memory_gib is not None and r.weights_gib is not None:
        out["activation_peak_gib"] = round(r.peak_torch_memory_gib - r.weights_gib, 2)
        notes.append(f"activation_peak_gib: derived as V0 peak_torch_memory {r.peak_torch_memory_gib} - weights "
                     f"{r.weights_gib} GiB")
    if out["cuda_graph_gib"] is None and r.cuda_graph_estimated_gib is not None:
        out["cuda_graph_gib"] = r.cuda_graph_estimated_gib
        notes.append("cuda_graph_gib: vLLM's pre-capture estimate (no capture figure in the log)")
    if out["kv_cache_tokens"] is None and r.gpu_blocks is not None:
        bs = r.block_size or DEFAULT_BLOCK_SIZE
        out["kv_cache_tokens"] = r.gpu_blocks * bs
        notes.append(f"kv_cache_tokens: derived as {r.gpu_blocks} GPU blocks x block size {bs}"
                     f"{'' if r.block_size else ' (default)'}")
    return out, notes


def _plan_dict(plan: Any) -> dict[str, Any]:
    if hasattr(plan, "model_dump"):
        return plan.model_dump(mode="json")
    if isinstance(plan, dict):
        return plan
    raise TypeError(f"expected a PlanResponse or its JSON dict, got {type(plan).__name__}")


def predicted_view(plan: Any) -> dict[str, Any]:
    """The contract keys from a plan (PlanResponse or `plan --json` dict)."""
    p = _plan_dict(plan)
    cfg, mem = p["config"], p["memory"]
    per = mem["per_gpu"]

    def gib(key: str) -> float:
        return round(per[key] / GiB, 2)

    return {
        "vllm_version": p.get("vllm_version"), "model": (p.get("model") or {}).get("name"),
        "tensor_parallel_size": cfg["tensor_parallel_size"], "pipeline_parallel_size": cfg["pipeline_parallel_size"],
        "gpu_memory_utilization": cfg["gpu_memory_utilization"], "max_model_len": cfg["max_model_len"],
        "weights_gib": gib("weights_bytes"), "activation_peak_gib": gib("activation_peak_bytes"),
        "non_torch_gib": gib("non_torch_bytes"), "cuda_graph_gib": gib("cuda_graph_bytes"),
        "kv_cache_gib": gib("kv_cache_bytes"), "kv_cache_tokens": mem["kv_cache_tokens"],
        "max_concurrency": round(mem["max_concurrency"], 2),
    }


def compare(reported: ReportedLaunch | dict[str, Any], plan: Any) -> dict[str, Any]:
    """{reported, predicted, differences}: differences are predicted - reported (and relative) per number."""
    rep = reported_view(reported)[0] if isinstance(reported, ReportedLaunch) else dict(reported)
    pred = predicted_view(plan)
    diffs: dict[str, Any] = {}
    for k in CONTRACT_KEYS:
        a, b = rep.get(k), pred.get(k)
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
        if not numeric:
            diffs[k] = None if a is None or b is None or a == b else {"reported": a, "predicted": b}
            continue
        delta = b - a
        diffs[k] = {"delta": round(delta, 4) if isinstance(delta, float) else delta,
                    "relative": round(delta / a, 4) if a else None}
    return {"reported": rep, "predicted": pred, "differences": diffs}


# ------------------------------------------------------------------------------------------- use case


def read_log(path: Path) -> str:
    """The log's text. InputError for a missing file, a directory, non-UTF-8 bytes or > 64 MiB."""
    data = read_bounded(path, limit=MAX_LOG_BYTES, what="a vLLM log file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); is it a binary file?") from None


def _hardware(r: ReportedLaunch, gpu: str | None, vram_gib: float | None, count: int) -> tuple[Any, list[str]]:
    from planner.app import Hardware
    from planner.hardware.catalog import match_smi_name, resolve_gpu

    notes: list[str] = []
    spec = resolve_gpu(gpu) if gpu else None
    if spec is None and r.gpu_name:
        spec = match_smi_name(r.gpu_name)
    if r.total_gpu_memory_gib:
        memory = int(r.total_gpu_memory_gib * GiB)
        if vram_gib:
            notes.append(f"--vram-gib {vram_gib:g} ignored: the log prints {r.total_gpu_memory_gib} GiB per GPU")
    elif vram_gib:
        memory = int(vram_gib * GiB)
    elif spec is not None:
        memory = spec.memory_bytes
    else:
        raise InputError(f"{r.source}: the log does not print the GPU memory; pass --gpu NAME or --vram-gib X")
    name = spec.names[0] if spec else (r.gpu_name or "unknown GPU")
    interconnect = (spec.interconnect.type if spec else "pcie") if count > 1 else "none"
    hw = Hardware(name=name, spec=spec, memory_bytes=memory, count=count, nodes=1, gpus_per_node=count,
                  interconnect=interconnect, free_bytes=None, probed=False)
    return hw, notes


def _version(r: ReportedLaunch) -> tuple[str | None, list[str]]:
    from planner.app import KNOWN_VLLM_VERSIONS

    if r.vllm_version:
        return r.vllm_version, []
    if r.engine == "V0":
        v = KNOWN_VLLM_VERSIONS[0]
        return v, [f"the log does not print the vLLM version; V0 engine: using the oldest accounting known ({v})"]
    return None, ["the log does not print the vLLM version; using the planner's default accounting"]


def check_log(path: Path, *, model: str | None = None, gpu: str | None = None,
              vram_gib: float | None = None) -> dict[str, Any]:
    """Parse a vLLM startup log, plan the same configuration, and compare the two.

    When the log's model cannot be loaded (not bundled, not a directory here, the hub unreachable) or the log
    names none, the answer still carries everything the log says, with `predicted` all null and a `note`;
    a `--model` that cannot be loaded is an InputError."""
    from pydantic import ValidationError

    from planner.app import ONLINE_QUANTIZATIONS, plan
    from planner.memory import KV_DTYPES
    from planner.models.sources import load_model, model_notes
    from planner.schemas import Pinned, PlanRequest

    r = parse_vllm_log(read_log(path), str(path))
    reported, notes = reported_view(r)
    notes = list(r.notes) + notes
    ref = model or r.model
    if not ref:
        return reported_only(r, path, reported, notes, "the log does not name the model")
    try:
        arch = load_model(ref)
    except InputError as e:
        if model:  # the user named it: their input is wrong, not the log
            raise InputError(f"--model {model!r}: {e}") from None
        return reported_only(r, path, reported, notes, f"cannot load the model {ref!r} named in the log: {e}")
    notes += model_notes(arch)
    tp, pp, dp = r.tensor_parallel_size or 1, r.pipeline_parallel_size or 1, r.data_parallel_size or 1
    if r.tensor_parallel_size is None:
        notes.append("the log does not print tensor_parallel_size; assuming 1")
    quant = None
    if r.quantization in ONLINE_QUANTIZATIONS and arch.quant is None:
        quant = r.quantization
    elif r.quantization and arch.quant is None:
        notes.append(f"the log shows quantization {r.quantization!r} but the model config has none: "
                     "predicted weights assume an unquantized checkpoint")
    kv = r.kv_cache_dtype if r.kv_cache_dtype in KV_DTYPES else None
    if r.kv_cache_dtype and kv is None:
        notes.append(f"kv_cache_dtype {r.kv_cache_dtype!r} is not one the planner knows; left to the planner")
    version, vnotes = _version(r)
    notes += vnotes
    if r.sampler:
        notes.append(f"the log shows a {r.sampler} top-p/top-k sampler: planned with --sampler {r.sampler}")
    hw, hnotes = _hardware(r, gpu, vram_gib, tp * pp * dp)
    notes += hnotes
    features = {k: getattr(r, k) for k in FEATURE_KEYS if getattr(r, k) is not None}
    if r.enable_prefix_caching is not None:
        features["enable_prefix_caching"] = r.enable_prefix_caching

    def request(serving: dict[str, Any]) -> Any:
        try:
            pinned = Pinned(tensor_parallel_size=tp, pipeline_parallel_size=pp, dtype=r.dtype, quantization=quant,
                            kv_cache_dtype=kv, gpu_memory_utilization=r.gpu_memory_utilization,
                            max_model_len=r.max_model_len, max_num_seqs=r.max_num_seqs,
                            max_num_batched_tokens=r.max_num_batched_tokens, enforce_eager=r.enforce_eager,
                            enable_expert_parallel=r.enable_expert_parallel if arch.is_moe else None,
                            sampler=r.sampler, **serving)
            return PlanRequest(model=ref, gpus=tp * pp * dp, vllm_version=version, pinned=pinned)
        except ValidationError as e:
            err = e.errors()[0]
            raise InputError(f"{path}: the log's {err['loc'][-1] if err['loc'] else '?'} cannot be planned "
                             f"({err['msg']})") from None

    resp, fnotes = _plan_with_features(request, features, lambda req: plan(req, arch=arch, hw=hw), path)
    notes += fnotes
    out = compare(reported, resp)
    out["source"] = str(path)
    out["hardware"] = {"gpu": hw.name, "memory_gib_per_gpu": round(hw.memory_bytes / GiB, 2), "gpu_count": hw.count}
    out["feasible"] = resp.feasible
    out["per_rank"] = r.per_rank
    out["settings"] = settings_view(r)
    out["note"] = None
    out["warnings"] = list(dict.fromkeys(notes + [w.message for w in resp.warnings]))  # a note the plan repeats once
    return out


def _plan_with_features(request: Callable[[dict[str, Any]], Any], features: dict[str, Any],
                        run: Callable[[Any], Any], path: Path) -> tuple[Any, list[str]]:
    """Re-plan with the log's serving features; a feature the planner cannot plan here (a speculative draft that
    is not available offline, a combination it refuses) is dropped with a note rather than failing the check,
    since the log itself is valid: first the speculative config alone, then every serving feature."""
    notes: list[str] = []
    attempts = [features]
    if "speculative_config" in features:
        attempts.append({k: v for k, v in features.items() if k != "speculative_config"})
    if features:
        attempts.append({})
    for i, serving in enumerate(attempts):
        try:
            return run(request(serving)), notes
        except InputError as e:
            if i == len(attempts) - 1:
                raise InputError(f"re-planning {path}: {e}") from None
            dropped = sorted(set(serving) - set(attempts[i + 1]))
            shown = ", ".join(f"{k}={json.dumps(serving[k], separators=(',', ':'))}" for k in dropped)
            notes.append(f"the log's {shown} cannot be planned here ({e}); planned without "
                         f"{'it' if len(dropped) == 1 else 'them'}")
    raise AssertionError("unreachable")  # the last attempt returns or raises


SETTING_KEYS = ("engine", "data_parallel_size", "dtype", "quantization", "kv_cache_dtype", "enforce_eager",
                "enable_prefix_caching", "enable_expert_parallel", "max_num_seqs", "max_num_batched_tokens",
                "block_size", "sampler", "gpu_name", "total_gpu_memory_gib", "gpu_blocks", "cpu_blocks",
                *FEATURE_KEYS)


def settings_view(r: ReportedLaunch) -> dict[str, Any]:
    """What else the log states (settings and GPU), beyond the contract keys; None where it is silent."""
    return {k: getattr(r, k) for k in SETTING_KEYS}


def reported_only(r: ReportedLaunch, path: Path, reported: dict[str, Any], notes: list[str],
                  why: str) -> dict[str, Any]:
    """check-log without a model config: everything the log says, the contract's `predicted` keys all null,
    and a note saying why and that --model DIR adds the prediction."""
    note = f"no prediction: {why}. --model DIR (a directory with the model's config.json) adds the prediction"
    count = (r.tensor_parallel_size or 1) * (r.pipeline_parallel_size or 1) * (r.data_parallel_size or 1)
    return {
        "reported": reported, "predicted": dict.fromkeys(CONTRACT_KEYS), "differences": dict.fromkeys(CONTRACT_KEYS),
        "source": str(path),
        "hardware": {"gpu": r.gpu_name, "memory_gib_per_gpu": r.total_gpu_memory_gib, "gpu_count": count},
        "feasible": None, "per_rank": r.per_rank, "settings": settings_view(r), "note": note,
        "warnings": [*notes, note],
    }
