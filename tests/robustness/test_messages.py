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


def test_csv_fields_carry_no_terminal_controls(tmp_path: Path) -> None:
    """Issue 22 item 1, CSV: a pack's forbid reason reaches `sweep --csv`; CSV escapes nothing, so the planner
    strips escape sequences and bidirectional overrides from its string fields."""
    pack = tmp_path / "evil.yaml"
    pack.write_text(
        "schema: 1\nname: evil\nversion: 1.0.0\nlayer: site\nrules:\n"
        "  - id: site.evil.forbid\n    description: drop TP 2\n    stage: sizing\n    when:\n"
        "      cand: {fact: candidate, tensor_parallel_size: 2}\n    then:\n"
        '      - forbid: candidate\n        reason: "evil\\x1b[2J\\u202egnp.exe"\n')
    rc, out, _ = run("sweep", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--gpus", "2",
                     "--rules", str(pack), "--csv")
    assert rc == 0
    assert "evilgnp.exe" in out
    assert "\x1b" not in out and "\u202e" not in out
