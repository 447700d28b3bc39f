"""`vllm-planner capacity` in the CLI: exit codes, JSON/CSV/HTML outputs, --explain, one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.clirun import one_error_line, run

ROOT = Path(__file__).resolve().parents[2]
BASE = ["capacity", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--rate", "5", "--input-len", "1000",
        "--output-len", "200", "--gpu", "H100", "--gpu", "L40S"]


def test_json_and_exit_zero_when_an_option_meets_the_slos() -> None:
    rc, out, _ = run(*BASE, "--slo-ttft-ms", "2000", "--slo-itl-ms", "50", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["best"] == 0 and d["options"][0]["meets_slo"] == "yes"
    assert d["request"]["slo"] == {"ttft_ms": 2000.0, "itl_ms": 50.0, "percentile": 95}


def test_exit_three_with_json_when_nothing_meets() -> None:
    rc, out, _ = run(*BASE, "--slo-itl-ms", "0.5", "--json")
    assert rc == 3
    d = json.loads(out)
    assert d["best"] is None and any(w["code"] == "W-CAPACITY-SLO" for w in d["warnings"])


def test_csv_has_a_row_per_option_and_marks_the_best() -> None:
    rc, out, _ = run(*BASE, "--slo-itl-ms", "50", "--csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    rc, js, _ = run(*BASE, "--slo-itl-ms", "50", "--json")
    d = json.loads(js)
    assert len(rows) == len(d["options"])
    assert [r["best"] for r in rows].count("True") == 1 and rows[0]["best"] == "True"
    for r, o in zip(rows, d["options"], strict=True):
        assert int(r["replicas"]) * int(r["gpus_per_replica"]) == int(r["total_gpus"])
        assert float(r["itl_ms"]) == o["itl_ms"]["expected"]


def test_console_report_and_explain() -> None:
    rc, out, _ = run(*BASE, "--slo-itl-ms", "50", "--rules", str(ROOT / "examples" / "site" / "prices.yaml"),
                     "--explain")
    assert rc == 0
    assert "Capacity for meta-llama/Llama-3.1-8B-Instruct at 5 req/s" in out
    assert "cap.best.cheapest-meeting-slo" in out and "Pareto" in out


def test_html_report_is_written_whole(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    rc, _, _ = run(*BASE, "--slo-itl-ms", "50", "--html", str(page), "--json")
    assert rc == 0
    text = page.read_text()
    assert text.lstrip().lower().startswith("<!doctype html>") and "<svg" in text
    assert not list(tmp_path.glob(".report.html.*"))  # no temporary file left behind


def test_html_into_a_missing_directory_is_a_clean_error(tmp_path: Path) -> None:
    rc, _, err = run(*BASE, "--html", str(tmp_path / "nope" / "r.html"), "--json")
    assert rc == 2 and "nope" in one_error_line(err)


@pytest.mark.parametrize(("args", "needle"), [
    (["--rate", "0"], "--rate 0"),
    (["--slo-ttft-ms", "-5"], "--slo-ttft-ms -5"),
    (["--slo-percentile", "97"], "--slo-percentile"),
    (["--gpu", "H1OO"], "unknown GPU 'H1OO'"),
    (["--max-gpus-per-replica", "0"], "--max-gpus-per-replica 0"),
    (["--dp", "2"], "--dp 2"),
    (["--input-len", "0"], "--input-len 0"),
])
def test_bad_input_is_one_line_exit_two(args: list[str], needle: str) -> None:
    argv = list(BASE)
    for flag in args[::2]:  # replace a flag BASE already has
        if flag in argv:
            i = argv.index(flag)
            del argv[i:i + 2]
    rc, _, err = run(*argv, *args, "--json")
    assert rc == 2
    assert needle in one_error_line(err)


def test_price_map_with_unknown_id_names_pack_and_id(tmp_path: Path) -> None:
    pack = tmp_path / "p.yaml"
    pack.write_text("schema: 1\nname: p\nversion: 1.0.0\nlayer: site\nparams:\n  gpu_hourly_price_usd:\n"
                    "    l40s: 1.0\n")
    rc, _, err = run(*BASE, "--rules", str(pack), "--json")
    assert rc == 2
    line = one_error_line(err)
    assert "gpu_hourly_price_usd (set by pack p)" in line and "'l40s'" in line and "l40s-48gb" in line


def test_a_negative_price_is_a_pack_error(tmp_path: Path) -> None:
    pack = tmp_path / "neg.yaml"
    pack.write_text("schema: 1\nname: neg\nversion: 1.0.0\nlayer: site\nparams:\n  gpu_hourly_price_usd:\n"
                    "    l40s-48gb: -1.0\n")
    rc, _, err = run(*BASE, "--rules", str(pack), "--json")
    assert rc == 2
    line = one_error_line(err)
    assert "gpu_hourly_price_usd" in line and "l40s-48gb" in line and "below the minimum" in line
