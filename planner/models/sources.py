"""Where a model's config comes from: a local directory, the bundled catalog, or the Hugging Face hub.

The one module that imports huggingface_hub (and only lazily, on the hub path, so local and catalog
loads work without touching the network stack). Everything here is I/O; the parsing itself is the
pure `planner.models.arch.parse_config`.

Resolution order for `load_model(ref)`:
  1. `ref` is an existing directory (or a config.json file) -> read config.json, plus
     hf_quant_config.json and model.safetensors.index.json when present;
  2. `ref` looks like a filesystem path but does not exist -> ModelConfigError;
  3. `ref` is a bundled catalog id (case-insensitive) -> the packaged copy; an alias (an instruct/base
     twin bundled without files, `alias_of` in its record) -> its target's copy, under the alias's id
     (alias_note() is the note that says so);
  4. `ref` is a valid hub id -> config.json (and the two companions) through `hf_hub_download`
     into the user's Hugging Face cache (atomic writes; never weights), plus per-dtype parameter
     counts from the safetensors headers when the hub can give them. When the hub cannot give it
     (not found, unreachable, offline), the error ends with the near misses in the catalog.

The catalog is read from index.json only (scripts/refresh_catalog.py builds it); search_catalog() and
near_misses() never parse configs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import ModelConfigError
from planner.models.arch import ModelArch, parse_config
from planner.suggest import NearMiss

CONFIG_FILE = "config.json"
QUANT_FILE = "hf_quant_config.json"  # ModelOpt (nvidia/*-FP8, *-NVFP4)
INDEX_FILE = "model.safetensors.index.json"

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    """One bundled model (transcribed from the catalog's INDEX.md)."""

    id: str  # hub id, e.g. "meta-llama/Llama-3.1-8B-Instruct"
    provenance: str  # VERBATIM, CONVERTED, RE-SERIALIZED, ABRIDGED, ... (see INDEX.md)
    source: str  # where the file was copied from
    architecture: str  # architectures[0] of the config
    notes: str
    published_params: int | None  # a parameter count a source states, when there is one
    published_params_note: str  # that count as written, with its source and caveats
    alias_of: str | None = None  # an id bundled under another id with the same geometry (instruct/base pairs)
    # computed by scripts/refresh_catalog.py the way a plan computes them, so listings never parse configs
    params_total: int | None = None
    params_active: int | None = None
    attention: str | None = None
    context: int | None = None
    quantization: str | None = None
    is_moe: bool = False
    multimodal: bool = False

    @property
    def directory(self) -> Path:
        return CATALOG_DIR / self.id


# --------------------------------------------------------------------------- JSON files


def _json_constant(name: str) -> float:
    """Accept the non-RFC-8259 constants Python writes (Mamba-Codestral's time_step_limit has
    Infinity); NaN in a size field is then rejected by parse_config's validation."""
    return float(name)


MAX_JSON_BYTES = 64 << 20  # config.json is KBs; a safetensors index of a 1T-parameter model a few MB


def _read_json(path: Path, label: str | None = None) -> dict[str, Any]:
    """A JSON object from `path`; every failure is a one-line ModelConfigError naming the file."""
    from planner.files import read_bounded

    label = label or str(path)
    try:
        raw = read_bounded(path, limit=MAX_JSON_BYTES, what="a JSON file", error=ModelConfigError)
    except ModelConfigError as err:
        raise ModelConfigError(str(err).replace(str(path), label, 1)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelConfigError(f"{label}: not UTF-8 text (is it a binary file?)") from None
    try:
        data = json.loads(text, parse_constant=_json_constant)
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{label}: not valid JSON: {err}") from err
    except RecursionError:
        raise ModelConfigError(f"{label}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{label}: expected a JSON object, got {type(data).__name__}")
    return data


def _optional_json(path: Path, label: str | None = None) -> dict[str, Any] | None:
    return _read_json(path, label) if path.is_file() else None


# --------------------------------------------------------------------------- local directory


def _load_local(config_path: Path, name: str) -> ModelArch:
    """config.json at `config_path`, with the companion files beside it."""
    directory = config_path.parent
    if config_path.is_dir():
        raise ModelConfigError(f"{config_path}: is a directory, expected a JSON file")
    if config_path.exists() and not config_path.is_file():
        raise ModelConfigError(f"{config_path}: not a regular file, expected a JSON file")
    if not config_path.is_file():
        raise ModelConfigError(f"{config_path}: no such file (a model directory needs a config.json)")
    return parse_config(
        _read_json(config_path), name=name,
        source=f"local:{directory if config_path.name == CONFIG_FILE else config_path}",
        hf_quant_config=_optional_json(directory / QUANT_FILE),
        safetensors_index=_optional_json(directory / INDEX_FILE),
    )


def _looks_like_path(ref: str) -> bool:
    """True for refs that can only mean a filesystem path (hub ids are 'name' or 'org/name')."""
    return (ref.startswith(("/", ".", "~")) or "\\" in ref or ref.count("/") > 1
            or (os.sep != "/" and os.sep in ref) or ref.endswith(".json"))


# --------------------------------------------------------------------------- bundled catalog


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[CatalogEntry, ...]:
    path = CATALOG_DIR / "index.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:  # a broken install, not a user error
        raise ModelConfigError(f"{path}: bundled model catalog unreadable: {err}") from err
    return tuple(CatalogEntry(**row) for row in rows)


def list_catalog() -> list[CatalogEntry]:
    """Every bundled model, sorted by id (case-insensitive)."""
    return sorted(_catalog(), key=lambda e: e.id.lower())


def catalog_entry(model_id: str) -> CatalogEntry | None:
    """The bundled entry whose id matches `model_id` case-insensitively, or None."""
    wanted = model_id.strip().lower()
    return next((e for e in _catalog() if e.id.lower() == wanted), None)


def near_misses(ref: str) -> list[NearMiss]:
    """The bundled ids closest to the model id `ref`, best first, each with how it relates: "same architecture"
    for an instruct/base pair (`meta-llama/Llama-3.1-405B-Instruct-FP8` -> `meta-llama/Llama-3.1-405B-Instruct`),
    "same family and size", "same family", or nothing when only the spelling is close (a typo). An alias and its
    target share one config and are suggested once."""
    from planner.suggest import rank_model_ids

    return rank_model_ids(ref, [(e.id, e.alias_of or e.id, e.quantization) for e in list_catalog()])


def closest_catalog_ids(ref: str) -> list[str]:
    """Bundled model ids closest to `ref` (case-insensitive), best first: the same network (an instruct/base
    pair), then the same family and size, then the same family, then close spellings, so that
    `Llama-3.1-8B-Instrcut` finds `meta-llama/Llama-3.1-8B-Instruct`."""
    return [m.id for m in near_misses(ref)]


def _unknown(err: ModelConfigError, ref: str) -> ModelConfigError:
    """`err` ending with the closest bundled ids, for a model the hub could not give: `did you mean:
    meta-llama/Llama-3.1-405B (same architecture), ...?`."""
    from planner.suggest import did_you_mean

    hint = did_you_mean([str(m) for m in near_misses(ref)])
    return ModelConfigError(f"{err}{hint}") if hint else err


# --------------------------------------------------------------------------- aliases and search


def alias_note(arch: ModelArch) -> str | None:
    """The note a plan of an alias carries: which bundled config it was planned with, and why that is right."""
    if not arch.source.startswith("catalog:"):
        return None
    entry = catalog_entry(arch.source.removeprefix("catalog:"))
    if entry is None or not entry.alias_of:
        return None
    return (f"{entry.id} is planned with the bundled {entry.alias_of} config (same geometry: "
            f"{entry.notes.rstrip('.')})")


def model_notes(arch: ModelArch) -> list[str]:
    """Notes about where a loaded model's config came from, for the plan's warnings (an alias's target)."""
    note = alias_note(arch)
    return [note] if note else []


# words a search may use besides id substrings; quantization methods as vLLM names them
_QUANT_WORDS = {"fp8": ("fp8",), "modelopt": ("fp8", "modelopt"), "modelopt_fp4": ("fp4", "nvfp4", "modelopt"),
                "mxfp4": ("fp4", "mxfp4"), "awq": ("awq", "int4"), "gptq": ("gptq",),
                "bitsandbytes": ("bnb", "bitsandbytes")}


def entry_tags(entry: CatalogEntry) -> list[str]:
    """The words `vllm-planner models QUERY` matches besides the id and the architecture: moe | dense,
    vision / multimodal, quantized and the method's words (fp8, fp4, ...), the attention kind, alias."""
    tags = ["moe" if entry.is_moe else "dense"]
    if entry.multimodal:
        tags += ["vision", "multimodal"]
    if entry.quantization:
        tags += ["quantized", entry.quantization,
                 *(w for w in _QUANT_WORDS.get(entry.quantization, ()) if w != entry.quantization)]
    if entry.attention:
        tags.append(entry.attention)
    if entry.alias_of:
        tags.append("alias")
    return tags


def search_catalog(query: str) -> list[CatalogEntry]:
    """Bundled models matching every word of `query` (case-insensitive): a substring of the id or the
    architecture class, or one of entry_tags. An empty query lists everything. Reads index.json only."""
    words = query.lower().split()
    return [e for e in list_catalog()
            if all(w in e.id.lower() or w in e.architecture.lower() or w in entry_tags(e) for w in words)]


def search_suggestions(query: str) -> list[str]:
    """Did-you-mean for a search that matched nothing: for each word that matches no model on its own, the
    closest search words (id words such as qwen3, and entry_tags); for a one-word query (an org/name id) with
    no close word, the closest bundled ids."""
    from planner.suggest import closest

    words = query.lower().split()
    lost = [w for w in words if not search_catalog(w)]
    if not lost:
        return []  # each word matches some model, only not together
    entries = list_catalog()
    vocabulary = {t for e in entries for t in entry_tags(e)}
    vocabulary |= {w for e in entries for w in re.split(r"[-_/\s]+", e.id.lower()) if len(w) > 1}
    choices = [(v, v, v) for v in sorted(vocabulary)]
    found = [] if "/" in query else [m for w in lost for m in closest(w, choices)]
    return found[:3] or ([m.id for m in near_misses(query)] if len(words) == 1 else [])


def load_catalog_dir(model_id: str, name: str | None = None) -> ModelArch:
    """Parse a bundled model's directory (config.json and its companions), without the catalog index."""
    directory = CATALOG_DIR / model_id
    label = f"catalog:{model_id}"
    return parse_config(
        _read_json(directory / CONFIG_FILE, f"{label}/{CONFIG_FILE}"), name=name or model_id, source=label,
        hf_quant_config=_optional_json(directory / QUANT_FILE, f"{label}/{QUANT_FILE}"),
        safetensors_index=_optional_json(directory / INDEX_FILE, f"{label}/{INDEX_FILE}"),
    )


def _load_catalog(entry: CatalogEntry, name: str) -> ModelArch:
    """A bundled model; an alias (an id bundled without files, `alias_of` a model with the same geometry) is
    its target's config under the alias's id, source and provenance (alias_note says so in the plan)."""
    if not entry.alias_of:
        return dataclasses.replace(load_catalog_dir(entry.id, name), provenance=entry.provenance)
    target = catalog_entry(entry.alias_of)
    if target is None or target.alias_of:  # refresh_catalog.py refuses these: a broken install
        raise ModelConfigError(f"catalog:{entry.id}: alias of {entry.alias_of!r}, which is not a bundled config")
    return dataclasses.replace(load_catalog_dir(target.id, name), source=f"catalog:{entry.id}",
                               provenance=entry.provenance)


# --------------------------------------------------------------------------- Hugging Face hub


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport exception types of the HTTP client huggingface_hub uses (httpx2 in 2.x)."""
    found: list[type[BaseException]] = [OSError, TimeoutError]
    for module, attr in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(__import__(module), attr))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _valid_hub_id(ref: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if ".." in ref or ref.startswith("/") or "\\" in ref:
        return False
    try:
        validate_repo_id(ref)
    except HFValidationError:
        return False
    return True


def _hub_error(ref: str, revision: str | None, err: BaseException) -> ModelConfigError:
    """Translate a huggingface_hub failure into one actionable line."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url = f"{constants.ENDPOINT}/{ref}"
    if isinstance(err, GatedRepoError):
        return ModelConfigError(f"'{ref}' is a gated model on the Hugging Face hub ({url}): accept its "
                                "licence there and set HF_TOKEN, or pass a local directory")
    if isinstance(err, RepositoryNotFoundError):
        return ModelConfigError(f"model '{ref}' not found on the Hugging Face hub ({url}): check the id; "
                                "for a private model set HF_TOKEN, or pass a local directory")
    if isinstance(err, RevisionNotFoundError):
        return ModelConfigError(f"revision '{revision}' not found for '{ref}' "
                                f"on the Hugging Face hub ({url})")
    if isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError):
        return ModelConfigError(f"'{ref}' has no {CONFIG_FILE} on the Hugging Face hub ({url}); "
                                "is it a model repository in transformers format?")
    cause = err.__cause__ or err.__context__
    reason = str(cause) if cause is not None and str(cause) else str(err)
    reason = " ".join(reason.split()) or type(err).__name__
    return ModelConfigError(f"cannot fetch {CONFIG_FILE} for '{ref}' from the Hugging Face hub ({url}): "
                            f"{reason[:300]}; check the id, network access or HF_TOKEN, "
                            "or pass a local directory")


def _hub_preflight(ref: str, revision: str | None, token: str | None, timeout_s: float) -> None:
    """One HEAD for config.json without hf_hub_download's retry-with-backoff, so that an unknown
    repo, a gated repo or an unreachable endpoint fails at once and with its real cause."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RevisionNotFoundError

    url = hf_hub_url(ref, CONFIG_FILE, revision=revision)
    try:
        get_hf_file_metadata(url, token=token, timeout=timeout_s)
    except (HfHubHTTPError, ValueError, *_network_errors()) as err:
        if isinstance(err, (GatedRepoError, RevisionNotFoundError)):  # the repo exists: the id is right
            raise _hub_error(ref, revision, err) from err
        raise _unknown(_hub_error(ref, revision, err), ref) from err


def _hub_file(ref: str, filename: str, revision: str | None, token: str | None,
              timeout_s: float, *, required: bool) -> dict[str, Any] | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(ref, filename, revision=revision, token=token, etag_timeout=timeout_s)
    except (HfHubHTTPError, EntryNotFoundError, ValueError, *_network_errors()) as err:
        missing = isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError)
        if not required and (missing or isinstance(err, HfHubHTTPError)):
            return None  # an optional companion file the hub does not serve: plan without it
        raise _hub_error(ref, revision, err) from err
    return _read_json(Path(path), f"hub:{ref}/{filename}")


def _hub_param_counts(ref: str, revision: str | None, token: str | None,
                      timeout_s: float) -> dict[str, int] | None:
    """dtype -> parameter count from the safetensors headers (range requests, no weights); None on
    any failure: the counts are a cross-check, not a requirement."""
    from huggingface_hub import get_safetensors_metadata
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        NotASafetensorsRepoError,
        SafetensorsParsingError,
    )

    hub_errors = (HfHubHTTPError, EntryNotFoundError, NotASafetensorsRepoError, SafetensorsParsingError,
                  ValueError, KeyError, *_network_errors())
    try:
        meta = get_safetensors_metadata(ref, revision=revision, token=token, timeout=timeout_s)
    except hub_errors:
        return None
    counts = getattr(meta, "parameter_count", None)
    return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) and counts else None


def _load_hub(ref: str, revision: str | None, token: str | None, timeout_s: float) -> ModelArch:
    _hub_preflight(ref, revision, token, timeout_s)
    config = _hub_file(ref, CONFIG_FILE, revision, token, timeout_s, required=True)
    quant = _hub_file(ref, QUANT_FILE, revision, token, timeout_s, required=False)
    index = _hub_file(ref, INDEX_FILE, revision, token, timeout_s, required=False)
    source = f"hub:{ref}" + (f"@{revision}" if revision else "")
    arch = parse_config(config, name=ref, source=source, hf_quant_config=quant, safetensors_index=index)
    return dataclasses.replace(arch, safetensors_params=_hub_param_counts(ref, revision, token, timeout_s))


# --------------------------------------------------------------------------- entry point


def load_model(ref: str, *, revision: str | None = None, token: str | None = None,
               timeout_s: float = 10.0) -> ModelArch:
    """Resolve `ref` (directory, catalog id or hub id) and parse its config.

    Args:
        ref: a model directory (or its config.json), a bundled catalog id, or a hub id "org/name".
        revision: hub branch, tag or commit (hub only).
        token: hub token; None lets huggingface_hub use HF_TOKEN or the stored login.
        timeout_s: seconds to wait for the hub's metadata answers.

    Raises:
        ModelConfigError: one line saying what was wrong and what to try.
    """
    ref = ref.strip()
    if not ref:
        raise ModelConfigError("model: expected a directory, a catalog id or a Hugging Face id, got ''")
    path = Path(ref).expanduser()
    if path.is_dir():
        return _load_local(path.resolve() / CONFIG_FILE, str(path.resolve()))  # absolute: plans replay anywhere
    if path.is_file() and path.name.endswith(".json"):
        return _load_local(path.resolve(), str(path.resolve().parent))
    if _looks_like_path(ref):
        raise ModelConfigError(f"no such model directory: {ref}")
    entry = catalog_entry(ref)
    if entry is not None and revision is None:
        return _load_catalog(entry, ref)
    if not _valid_hub_id(ref):
        raise _unknown(ModelConfigError(f"model: {ref!r} is not a model directory, a bundled catalog id or a "
                                        "Hugging Face id (org/name)"), ref)
    return _load_hub(ref, revision, token, timeout_s)
