"""Every bundled catalog model parses, and the catalog index matches the packaged files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.models.arch import LAYER_KINDS, ModelArch, derived_max_model_len
from planner.models.sources import CATALOG_DIR, catalog_entry, list_catalog, load_model

INDEX = json.loads((CATALOG_DIR / "index.json").read_text(encoding="utf-8"))
IDS = [row["id"] for row in INDEX]
SHARED = Path("/work/shared/model-configs")


def test_index_lists_every_packaged_config() -> None:
    """index.json and the <org>/<name>/config.json directories name the same models."""
    on_disk = {str(p.parent.relative_to(CATALOG_DIR)) for p in CATALOG_DIR.glob("*/*/config.json")}

    assert on_disk == {row["id"] for row in INDEX if not row["alias_of"]}


def test_index_is_what_the_provenance_records_give() -> None:
    """scripts/refresh_catalog.py --check: every record's files exist with the recorded sha256, every
    directory has a record, and index.json is the one the records build (stale index -> rc 1)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[3] / "scripts" / "refresh_catalog.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_index_rows_have_the_documented_fields() -> None:
    """Each row carries id, provenance, source, architecture, notes and the published count, plus the
    columns `vllm-planner models` shows (computed by scripts/refresh_catalog.py)."""
    keys = {
        "id",
        "provenance",
        "source",
        "architecture",
        "notes",
        "published_params",
        "published_params_note",
        "alias_of",
        "params_total",
        "params_active",
        "attention",
        "context",
        "quantization",
        "is_moe",
        "multimodal",
    }

    for row in INDEX:
        assert keys == set(row), row["id"]
        assert row["published_params"] is None or isinstance(row["published_params"], int)


@pytest.mark.parametrize("model_id", IDS)
def test_bundled_config_parses(model_id: str) -> None:
    """The packaged config loads through the catalog path with a consistent geometry."""
    arch = load_model(model_id)

    assert isinstance(arch, ModelArch)
    assert f"catalog:{model_id}" == arch.source
    assert catalog_entry(model_id).provenance == arch.provenance
    assert arch.num_layers == len(arch.layer_types)
    assert set(arch.layer_types) <= set(LAYER_KINDS)
    assert arch.hidden_size > 0 and arch.vocab_size > 0
    assert arch.config_dtype in ("bfloat16", "float16", "float32")
    assert derived_max_model_len(arch) >= 2048
    if arch.moe is not None:
        assert set(arch.moe.moe_layers) <= set(range(arch.num_layers))
    if "sliding_attention" in arch.layer_types:
        assert arch.sliding_window


@pytest.mark.parametrize("model_id", IDS)
def test_architecture_column_matches_config(model_id: str) -> None:
    """The index's architecture column is the config's architectures[0]."""
    arch = load_model(model_id)

    assert catalog_entry(model_id).architecture == arch.architectures[0]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared reference configs not available")
def test_packaged_files_are_byte_exact_copies() -> None:
    """Every packaged JSON file equals its /work/shared/model-configs original byte for byte."""
    originals = sorted(SHARED.glob("*/*/*.json"))

    assert originals
    for original in originals:
        copy = CATALOG_DIR / original.relative_to(SHARED)
        assert original.read_bytes() == copy.read_bytes(), str(copy)


def test_list_catalog_is_sorted_and_complete() -> None:
    """list_catalog returns every entry, sorted by id ignoring case."""
    ids = [e.id for e in list_catalog()]

    assert sorted(IDS, key=str.lower) == ids


def test_published_params_transcribed() -> None:
    """Counts are transcribed as integers; entries without one carry null."""
    assert catalog_entry("meta-llama/Llama-3.1-8B-Instruct").published_params == 8_030_261_248
    assert catalog_entry("meta-llama/Llama-3.1-70B-Instruct").published_params is None
    assert "671B" in catalog_entry("deepseek-ai/DeepSeek-V3").published_params_note
