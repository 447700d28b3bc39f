#!/usr/bin/env python3
"""Rebuild the bundled model catalog's index from its provenance records, and check every record.

The catalog is `planner/models/catalog/<org>/<name>/*.json` (config.json, and hf_quant_config.json or a
safetensors index where the model has one) plus one line per model in `planner/models/catalog/sources/*.yaml`:

    - {"id": "org/name", "provenance": "VERBATIM", "source": "github:owner/repo@commit:path", "architecture":
       "LlamaForCausalLM", "notes": "...", "published_params": 8030261248, "published_params_note": "8.03B [card]",
       "files": {"config.json": "<sha256>"}}

Adding a model is its config file plus that one line (run this script to get the sha256 and the index row).
The script refuses a record whose files are missing, changed since the record was written (sha256), or not
recorded; a directory without a record; a duplicate id; an `architecture` that is not the config's
`architectures[0]`; and a config the planner cannot parse. It then writes `index.json`: the records plus
what `vllm-planner models` shows per row (parameters, attention, context, quantization), so that listing and
searching the catalog never parse 150 configs.

    python scripts/refresh_catalog.py            # check everything, rewrite index.json
    python scripts/refresh_catalog.py --check    # check everything, fail if index.json is stale (CI)
    python scripts/refresh_catalog.py --hash org/name   # print the "files" value for a new record
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.models.sources import CATALOG_DIR  # noqa: E402

SOURCES_DIR = CATALOG_DIR / "sources"
INDEX = CATALOG_DIR / "index.json"
RECORD_FIELDS = ("id", "provenance", "source", "architecture", "notes", "published_params", "published_params_note",
                 "files")
OPTIONAL_FIELDS = ("alias_of",)


class CatalogError(Exception):
    """A record or file that does not check out; the message names the file and line."""


def file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every JSON file in a model's directory, by file name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(model_dir.glob("*.json"))}


def read_records(sources_dir: Path = SOURCES_DIR) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) for every line of every sources/*.yaml; each record is one `- {json}` line."""
    out = []
    for path in sorted(sources_dir.glob("*.yaml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path.relative_to(ROOT)}:{number}"
            if not text.startswith("- {"):
                raise CatalogError(f"{where}: expected one record per line, '- {{...}}'")
            try:
                record = json.loads(text[2:])
            except json.JSONDecodeError as err:
                raise CatalogError(f"{where}: not a JSON object: {err}") from None
            out.append((where, record))
    return out


def check_record(where: str, rec: dict[str, Any]) -> None:
    fields = set(rec)
    missing = [f for f in RECORD_FIELDS if f not in fields]
    unknown = sorted(fields - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS))
    if missing or unknown:
        raise CatalogError(f"{where}: {rec.get('id')!r}: missing {missing}, unknown {unknown}")
    if rec["published_params"] is not None and not isinstance(rec["published_params"], int):
        raise CatalogError(f"{where}: published_params must be an integer or null")
    model_dir = CATALOG_DIR / rec["id"]
    if rec.get("alias_of"):
        if model_dir.exists() or rec["files"]:
            raise CatalogError(f"{where}: an alias ({rec['id']} -> {rec['alias_of']}) has no files of its own")
        return
    if not (model_dir / "config.json").is_file():
        raise CatalogError(f"{where}: {model_dir.relative_to(ROOT)}/config.json does not exist")
    actual = file_hashes(model_dir)
    if actual != rec["files"]:
        changed = sorted(set(actual) ^ set(rec["files"]) | {k for k in actual if rec["files"].get(k) != actual[k]})
        raise CatalogError(f"{where}: {rec['id']}: files differ from the record ({', '.join(changed)}); "
                           f"the directory holds {json.dumps(actual)}")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch = (config.get("architectures") or ["?"])[0]
    if arch != rec["architecture"]:
        raise CatalogError(f"{where}: architecture {rec['architecture']!r}, but config.json says {arch!r}")


def derived(model_id: str) -> dict[str, Any]:
    """What `vllm-planner models` shows for a model, computed the way a plan computes it."""
    from planner.models.arch import derived_max_model_len
    from planner.models.params import active_params, total_params
    from planner.models.sources import load_catalog_dir

    arch = load_catalog_dir(model_id)
    return {"params_total": total_params(arch), "params_active": active_params(arch),
            "attention": arch.attention_kind, "context": derived_max_model_len(arch),
            "quantization": arch.quant.method if arch.quant is not None else None,
            "is_moe": arch.is_moe, "multimodal": arch.is_multimodal}


def build_index(records: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    seen: dict[str, str] = {}
    rows = []
    for where, rec in records:
        check_record(where, rec)
        key = rec["id"].lower()
        if key in seen:
            raise CatalogError(f"{where}: duplicate id {rec['id']!r} (first at {seen[key]})")
        seen[key] = where
    ids = {rec["id"] for _, rec in records}
    for where, rec in records:
        target = rec.get("alias_of")
        if target and target not in ids:
            raise CatalogError(f"{where}: alias_of {target!r} is not a bundled model")
    on_disk = {str(p.parent.relative_to(CATALOG_DIR)) for p in CATALOG_DIR.glob("*/*/config.json")}
    unrecorded = sorted(on_disk - ids)
    if unrecorded:
        raise CatalogError(f"no provenance record for {', '.join(unrecorded)} (add a line to {SOURCES_DIR.name}/)")
    by_id = {rec["id"]: rec for _, rec in records}
    for _, rec in sorted(records, key=lambda r: r[1]["id"].lower()):
        row = {k: rec[k] for k in RECORD_FIELDS if k != "files"}
        row["alias_of"] = rec.get("alias_of")
        try:
            row.update(derived(rec.get("alias_of") or rec["id"]))
        except Exception as err:  # the planner cannot read this config: the record is not usable
            raise CatalogError(f"{rec['id']}: the planner cannot parse its config: {err}") from err
        if row["alias_of"]:
            row["architecture"] = by_id[row["alias_of"]]["architecture"]
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail when index.json is not what the records give")
    ap.add_argument("--hash", metavar="ORG/NAME", help="print the files record of a model directory")
    args = ap.parse_args(argv)
    if args.hash:
        print(json.dumps(file_hashes(CATALOG_DIR / args.hash)))
        return 0
    try:
        text = render(build_index(read_records()))
    except CatalogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    current = INDEX.read_text(encoding="utf-8") if INDEX.exists() else ""
    if args.check:
        if current != text:
            print(f"error: {INDEX.relative_to(ROOT)} is stale: run python scripts/refresh_catalog.py",
                  file=sys.stderr)
            return 1
        print(f"ok: {text.count(chr(10) + '  {')} models, every record checked")
        return 0
    INDEX.write_text(text, encoding="utf-8")
    print(f"wrote {INDEX.relative_to(ROOT)}: {text.count(chr(10) + '  {')} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
