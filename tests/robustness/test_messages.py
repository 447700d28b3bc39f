"""Issue 22 item 11: an error names what is wrong where it is wrong (a model's config, not the rule packs)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clirun import one_error_line, run


def _llama_config() -> dict:
    """The bundled Llama-3.1-8B-Instruct config.json."""
    from planner.models.sources import load_model

    return dict(load_model("meta-llama/Llama-3.1-8B-Instruct").raw)


def test_an_unknown_checkpoint_quantization_blames_the_config(tmp_path: Path) -> None:
    cfg = _llama_config()
    cfg["quantization_config"] = {"quant_method": "weirdq", "bits": 4}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, _, err = run("plan", "--model", str(tmp_path), "--gpu", "H100")
    line = one_error_line(err)
    assert rc == 2
    assert f"{tmp_path}/config.json: quantization_config.quant_method 'weirdq'" in line
    assert not line.startswith("error: no rule pack")


def test_csv_fields_carry_no_terminal_controls() -> None:
    """Issue 22 item 1, CSV: CSV escapes nothing, so `sweep --csv` and `capacity --csv` strip escape sequences and
    bidirectional overrides from string fields (packs, the one source of free text there, refuse them already:
    this is the second line of defence)."""
    from planner.cli import _csv

    assert _csv("evil\x1b[2J\u202egnp.exe\x9b31m") == "evilgnp.exe"
    assert _csv(3.5) == 3.5 and _csv(True) is True
