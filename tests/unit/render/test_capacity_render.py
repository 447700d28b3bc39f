"""The capacity renderers (console and HTML) on a hand-written capacity JSON.

Expected strings are worked out by hand from the fixture below (formats: TTFT to the ms, ITL to 0.1 ms,
rates with 1-2 decimals under 100, money with cents), never copied from the renderers' output.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from planner.render.capacity import render_capacity, safe, strip_controls
from planner.render.capacity_html import nice_ticks, render_capacity_html

GiB = 1 << 30


def _config(tp: int, dp: int = 1, ep: bool = False, kv: str = "auto", quant: str | None = None) -> dict[str, Any]:
    return {"tensor_parallel_size": tp, "pipeline_parallel_size": 1, "data_parallel_size": dp,
            "enable_expert_parallel": ep, "quantization": quant, "kv_cache_dtype": kv, "gpu_memory_utilization": 0.9,
            "max_model_len": 131072, "max_num_seqs": 256, "max_num_batched_tokens": 8192, "enforce_eager": False,
            "block_size": 16, "dtype": "bfloat16"}


def _memory(total: int, budget: int, weights: int, act: int, non_torch: int, graphs: int, kv: int) -> dict[str, int]:
    return {"total_bytes": total * GiB, "budget_bytes": budget * GiB, "weights_bytes": weights * GiB,
            "activation_peak_bytes": act * GiB, "non_torch_bytes": non_torch * GiB, "cuda_graph_bytes": graphs * GiB,
            "kv_cache_bytes": kv * GiB}


H100 = {
    "key": "h100-sxm-80gb/tp1-pp1-dp1/kvauto", "gpu": "NVIDIA H100 80GB HBM3", "catalog_id": "h100-sxm-80gb",
    "gpus_per_replica": 1, "replicas": 3, "total_gpus": 3, "nodes_per_replica": 1, "config": _config(1),
    "serve_command": "vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 131072",
    "per_replica": {"rate": 6.667, "max_rate": 11.2, "concurrency": 23, "utilization": 0.6},
    "ttft_ms": {"low": 80.1, "expected": 120.4, "high": 210.0}, "itl_ms": {"low": 9.0, "expected": 11.0, "high": 13.2},
    "meets_slo": "yes", "cost_per_hour": 7.5, "cost_per_million_output_tokens": 1.56, "pareto": True,
    "output_tokens_per_s_per_gpu": 888.9, "tokens_per_s_per_user": 90.9, "limited_by": "kv_cache",
    "memory": _memory(80, 72, 16, 2, 1, 1, 50), "kv_cache_tokens": 450000,
}
L40S = {
    "key": "l40s/tp2-pp1-dp1/kvfp8", "gpu": "NVIDIA L40S", "catalog_id": "l40s",
    "gpus_per_replica": 2, "replicas": 4, "total_gpus": 8, "nodes_per_replica": 1, "config": _config(2, kv="fp8"),
    "serve_command": "vllm serve meta-llama/Llama-3.1-8B-Instruct -tp 2 --kv-cache-dtype fp8",
    "per_replica": {"rate": 5.0, "max_rate": 5.5, "concurrency": 40, "utilization": 0.909},
    "ttft_ms": {"low": 400.0, "expected": 900.0, "high": 2500.0},
    "itl_ms": {"low": 25.0, "expected": 30.0, "high": 60.0},
    "meets_slo": "at-risk", "cost_per_hour": 8.0, "cost_per_million_output_tokens": 2.4, "pareto": True,
    "output_tokens_per_s_per_gpu": 1500.0, "tokens_per_s_per_user": 40.0, "limited_by": "step_time",
    "memory": _memory(48, 43, 8, 2, 1, 0, 30), "kv_cache_tokens": 300000,
}
A100 = {  # dominated by L40S (slower per user and per GPU), no price
    "key": "a100-sxm-40gb/tp1-pp1-dp2-ep/awq", "gpu": "NVIDIA A100-SXM4-40GB", "catalog_id": "a100-sxm-40gb",
    "gpus_per_replica": 2, "replicas": 2, "total_gpus": 4, "nodes_per_replica": 1,
    "config": _config(1, dp=2, ep=True, quant="awq"),
    "serve_command": "vllm serve meta-llama/Llama-3.1-8B-Instruct -dp 2 --enable-expert-parallel",
    "per_replica": {"rate": 10.0, "max_rate": 10.5, "concurrency": 60, "utilization": 0.952},
    "ttft_ms": {"low": 2000.0, "expected": 3000.0, "high": 5000.0},
    "itl_ms": {"low": 50.0, "expected": 60.0, "high": 80.0},
    "meets_slo": "no", "cost_per_hour": None, "cost_per_million_output_tokens": None, "pareto": False,
    "output_tokens_per_s_per_gpu": 700.0, "tokens_per_s_per_user": 20.0, "limited_by": "max_num_seqs",
    "memory": _memory(40, 36, 6, 1, 1, 1, 20), "kv_cache_tokens": 200000,
}
DATA: dict[str, Any] = {
    "planner_version": "0.1.0", "vllm_version": "0.33.0",
    "request": {"model": "meta-llama/Llama-3.1-8B-Instruct", "rate": 20.0, "input_len": 1000, "output_len": 200,
                "slo": {"ttft_ms": 2000.0, "itl_ms": 50.0, "percentile": 95}},
    "options": [H100, L40S, A100], "best": 0,
    "decisions": {"capacity_option": {
        "value": H100["key"], "by": "capacity.cheapest", "reason": "cheapest option that meets the SLOs",
        "superseded": [{"rule": "capacity.fastest", "value": L40S["key"], "why": "costs more"}]}},
    "audit": {}, "warnings": [{"code": "W-NO-PRICE", "message": "no price for NVIDIA A100-SXM4-40GB", "rule": None}],
    "notes": ["prices are on-demand list prices"],
}
HOSTILE_MODEL = "evil[/x]\x1b[2J<script>alert(1)</script>:fire:"


def no_best() -> dict[str, Any]:
    d = copy.deepcopy(DATA)
    d["best"] = None
    d["options"][0]["meets_slo"] = "at-risk"
    return d


def hostile() -> dict[str, Any]:
    d = copy.deepcopy(DATA)
    d["request"]["model"] = HOSTILE_MODEL
    d["options"][0]["gpu"] = "GPU[/bold]\x1b]0;pwned\x07X\x9b31mY"
    d["options"][0]["serve_command"] = "vllm serve x\x1b[31m [/red]"
    d["warnings"] = [{"code": "W-[b]", "message": "[red]boom\x1b[31m\x00", "rule": "site.[/]rule"}]
    d["notes"] = ["bell\x07 [link=file:///etc/passwd]x[/link]"]
    d["decisions"]["capacity_option"]["reason"] = "because [/] \x1b[1m"
    return d


def console_text(data: dict[str, Any], width: int = 200, **kw: Any) -> str:
    c = Console(record=True, width=width, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    render_capacity(data, console=c, **kw)
    c.file.close()
    return c.export_text()


def row(text: str, needle: str) -> str:
    """The table line that holds `needle` (a table line starts with the box's │)."""
    lines = [ln for ln in text.splitlines() if needle in ln and ln.startswith("│")]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


# --- helpers -------------------------------------------------------------------------------------------

def test_strip_controls_removes_escape_sequences_and_controls_but_keeps_newline_and_tab() -> None:
    assert strip_controls("a\x1b[2Jb\x1b]0;t\x07c\x9b31md\x00e\n\tf\x7f\x1bPq\x1b\\g\x9d8;;x\x9ch\x1b7i") == (
        "abcde\n\tfghi")


def test_safe_text_is_literal_under_markup() -> None:
    s = "x[/x] [bold]y[/] \\[z]"
    assert Text.from_markup(safe(s)).plain == s


def test_nice_ticks() -> None:
    assert nice_ticks(95.445) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(1575.0) == [0, 500, 1000, 1500, 2000]


# --- console -------------------------------------------------------------------------------------------

def test_header_best_and_rows() -> None:
    out = console_text(DATA)
    assert ("Capacity for meta-llama/Llama-3.1-8B-Instruct at 20 req/s, 1,000 in / 200 out; "
            "SLO TTFT ≤ 2,000 ms, ITL ≤ 50 ms at p95") in out
    assert "Best: 3 x NVIDIA H100 80GB HBM3: 3 replicas of 1 GPU (TP1 PP1), $7.50/h, $1.56/M output tokens" in out
    assert "TTFT p95 120 (80–210) ms, ITL p95 11.0 (9.0–13.2) ms; limited by kv_cache" in out
    assert "serve: vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 131072" in out
    cells = [re.sub(r"\s+", " ", c).strip() for c in row(out, "NVIDIA H100").split("│")[1:-1]]
    assert cells == ["★◆", "NVIDIA H100 80GB HBM3", "TP1 PP1", "1", "3", "3", "11.2", "60%", "120 (80–210)",
                     "11.0 (9.0–13.2)", "yes", "$7.50", "$1.56"]
    cells = [re.sub(r"\s+", " ", c).strip() for c in row(out, "NVIDIA L40S").split("│")[1:-1]]
    assert cells == ["◆", "NVIDIA L40S", "TP2 PP1 kv fp8", "2", "4", "8", "5.50", "91%", "900 (400–2,500)",
                     "30.0 (25.0–60.0)", "at-risk", "$8.00", "$2.40"]
    cells = [re.sub(r"\s+", " ", c).strip() for c in row(out, "NVIDIA A100").split("│")[1:-1]]
    assert cells == ["", "NVIDIA A100-SXM4-40GB", "TP1 PP1 DP2 EP awq", "2", "2", "4", "10.5", "95%",
                     "3,000 (2,000–5,000)", "60.0 (50.0–80.0)", "no", "-", "-"]
    assert "TTFT p95 ms" in out and "ITL p95 ms" in out
    lines = out.splitlines()
    assert lines.index(row(out, "NVIDIA H100")) < lines.index(row(out, "NVIDIA L40S")) < lines.index(
        row(out, "NVIDIA A100"))
    assert "warning W-NO-PRICE: no price for NVIDIA A100-SXM4-40GB" in out
    assert "note: prices are on-demand list prices" in out
    assert "more option" not in out


def test_best_row_comes_first_even_when_not_index_0() -> None:
    d = copy.deepcopy(DATA)
    d["best"] = 1
    out = console_text(d)
    lines = out.splitlines()
    assert row(out, "NVIDIA L40S").startswith("│ ★◆ ")
    assert row(out, "NVIDIA H100").startswith("│ ◆ ")
    assert lines.index(row(out, "NVIDIA L40S")) < lines.index(row(out, "NVIDIA H100"))
    assert "Best: 8 x NVIDIA L40S: 4 replicas of 2 GPUs (TP2 PP1 kv fp8)" in out


def test_limit_and_all() -> None:
    out = console_text(DATA, limit=2)
    assert "1 more option not shown; --all shows them" in out
    assert "TP1 PP1 DP2 EP awq" not in out
    out = console_text(DATA, limit=1)
    assert "2 more options not shown; --all shows them" in out
    out = console_text(DATA, limit=None)
    assert "TP1 PP1 DP2 EP awq" in out and "more option" not in out


def test_no_best_names_the_closest() -> None:
    out = console_text(no_best())
    assert "No option meets the SLOs. Closest (SLO at-risk): 3 x NVIDIA H100 80GB HBM3" in out
    assert "Best:" not in out and "serve:" not in out
    assert row(out, "NVIDIA H100").startswith("│ ◆ ")


def test_pareto_chart_is_drawn_with_axes_and_limits() -> None:
    out = console_text(DATA)
    assert "Pareto frontier" in out
    assert "tokens/s per user" in out and "output tok/s per GPU" in out
    assert "· option  ◆ Pareto frontier (joined)  ★ best" in out
    # x 20..90.9 and y 700..1500 padded by 5% of their spans: 16.455..94.445 and 660..1540
    assert re.search(r"^\s*16\.5\s.*\s94\.4\s*$", out, re.M)
    assert re.search(r"^1540\.0┤", out, re.M) and re.search(r"^ 660\.0┤", out, re.M)
    plot = [ln for ln in out.splitlines() if "┤" in ln or ln.lstrip().startswith("│")]
    assert any("★" in ln for ln in plot)  # the best point
    assert console_text(DATA) == out  # same text on every run: fixed size, no terminal probing


def test_chart_beside_the_table_only_when_wide_enough() -> None:
    def same_line(out: str) -> bool:
        return any("Options (★ best" in ln and "Pareto frontier" in ln for ln in out.splitlines())

    assert not same_line(console_text(DATA, width=200))
    assert same_line(console_text(DATA, width=300))


def test_explain_prints_the_decisions() -> None:
    out = console_text(DATA, explain=True)
    assert ("capacity_option = 'h100-sxm-80gb/tp1-pp1-dp1/kvauto'  by capacity.cheapest: "
            "cheapest option that meets the SLOs") in out
    assert "beat capacity.fastest = 'l40s/tp2-pp1-dp1/kvfp8' (costs more)" in out
    assert "capacity.cheapest" not in console_text(DATA)


def test_hostile_inputs_print_literally_without_escape_sequences() -> None:
    out = console_text(hostile(), explain=True)
    assert "Capacity for evil[/x]<script>alert(1)</script>:fire: at 20 req/s" in out
    assert "GPU[/bold]XY" in out
    assert "serve: vllm serve x [/red]" in out
    assert "warning W-[b]: [red]boom  (site.[/]rule)" in out
    assert "note: bell [link=file:///etc/passwd]x[/link]" in out
    assert "because [/] " in out
    for ch in ("\x1b", "\x07", "\x9b", "\x00"):
        assert ch not in out


def test_hostile_inputs_on_a_terminal_leave_only_rich_styles() -> None:
    c = Console(record=True, width=200, force_terminal=True, color_system="truecolor", file=open(os.devnull, "w"))  # noqa: SIM115
    render_capacity(hostile(), console=c, explain=True)
    c.file.close()
    ansi = c.export_text(styles=True)
    assert re.sub(r"\x1b\[[0-9;]*m", "", ansi).count("\x1b") == 0  # only SGR colour codes, from rich
    assert "\x07" not in ansi and "pwned" not in ansi


# --- HTML ----------------------------------------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source", "area", "base", "embed", "track"}
SVG_EMPTY = {"line", "circle", "path", "polyline", "rect"}


class Page(HTMLParser):
    """A strict walk of the page: tags must nest and close; collects what the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype = ""
        self.title = ""
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.rows: list[list[str]] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "tr" and "tbody" in self.stack:
            self.rows.append([])
        if tag == "td" and "tbody" in self.stack:
            self.rows[-1].append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID | SVG_EMPTY:
            self.errors.append(f"self-closed <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "title" and "svg" not in self.stack:
            self.title += data
        if self.stack and self.stack[-1] == "td" and "tbody" in self.stack:
            self.rows[-1][-1] += data
        self.texts.append(data)


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    assert p.errors == [] and p.stack == []
    assert p.doctype.lower() == "doctype html"
    return p


def test_html_is_well_formed_and_self_contained() -> None:
    page = render_capacity_html(DATA)
    p = parse(page)
    assert p.title == "Capacity plan: meta-llama/Llama-3.1-8B-Instruct"
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.I)
    assert all("src" not in a and "href" not in a for _, a in p.tags)
    assert ('<meta charset="utf-8">' in page) and page.startswith("<!DOCTYPE html>")
    assert ("Best: 3 x NVIDIA H100 80GB HBM3 (3 replicas of 1 GPU, TP1 PP1), $7.50/h, $1.56/M output tokens, "
            "limited by kv_cache") in re.sub(r"<[^>]+>", "", page)


def test_html_table_rows() -> None:
    p = parse(render_capacity_html(DATA))
    assert p.rows == [
        ["★◆", "NVIDIA H100 80GB HBM3", "TP1 PP1", "1", "3", "3", "11.2", "60%", "120 (80–210)", "11.0 (9.0–13.2)",
         "yes", "$7.50", "$1.56"],
        ["◆", "NVIDIA L40S", "TP2 PP1 kv fp8", "2", "4", "8", "5.50", "91%", "900 (400–2,500)", "30.0 (25.0–60.0)",
         "at-risk", "$8.00", "$2.40"],
        ["", "NVIDIA A100-SXM4-40GB", "TP1 PP1 DP2 EP awq", "2", "2", "4", "10.5", "95%", "3,000 (2,000–5,000)",
         "60.0 (50.0–80.0)", "no", "-", "-"]]
    assert [t for t in p.texts if t in ("GPUs/replica", "total GPUs", "max req/s/replica", "TTFT p95 ms",
                                         "ITL p95 ms", "$/M out tokens")] == [
        "GPUs/replica", "total GPUs", "max req/s/replica", "TTFT p95 ms", "ITL p95 ms", "$/M out tokens"]
    trs = [a for t, a in p.tags if t == "tr" and "data-key" in a]
    assert [a["data-key"] for a in trs] == [H100["key"], L40S["key"], A100["key"]]
    assert trs[0].get("class") == "best" and "class" not in trs[1]
    assert [a["class"] for t, a in p.tags if t == "td" and a.get("class", "").startswith("slo-")] == [
        "slo-yes", "slo-at-risk", "slo-no"]


def test_html_chart_joins_the_frontier_and_stars_the_best() -> None:
    p = parse(render_capacity_html(DATA))
    assert sum(t == "svg" for t, _ in p.tags) == 1
    circles = [a for t, a in p.tags if t == "circle" and "cx" in a and a.get("r") in ("3", "4.5")]
    assert len(circles) == 3 + 2  # three options, and the legend's two circles
    (poly,) = [a for t, a in p.tags if t == "polyline"]
    xs = [float(pt.split(",")[0]) for pt in poly["points"].split()]
    assert len(xs) == 2 and xs[0] < xs[1]  # L40S (40 tok/s/user) then H100 (90.9)
    texts = [t.strip() for t in p.texts]
    assert "tokens/s per user" in texts and "output tokens/s per GPU" in texts
    # x to 90.9 x 1.05 = 95.4 in steps of 20; y to 1500 x 1.05 = 1575 in steps of 500
    assert {"0", "20", "100", "500", "2,000"} <= set(texts)
    assert any(t.startswith("best: " + H100["key"]) for t in texts)
    assert "best" in texts


def test_html_memory_bars_one_group_per_option() -> None:
    p = parse(render_capacity_html(DATA))
    groups = [a["data-key"] for t, a in p.tags if t == "div" and a.get("class") == "membar"]
    assert groups == [H100["key"], L40S["key"], A100["key"]]
    bars = [a["style"] for t, a in p.tags if t == "div" and a.get("class") == "bar"]
    assert bars == ["width:100.0%", "width:60.0%", "width:50.0%"]  # 80, 48 and 40 GiB against 80
    segs = [a["title"] for t, a in p.tags if t == "span" and a.get("title", "").endswith("GiB")]
    # H100: 16 + 2 + 1 + 1 + 50 = 70 GiB used of a 72 GiB budget; L40S has no CUDA graph segment (0 bytes)
    assert segs[:6] == ["weights 16.00 GiB", "activation peak 2.00 GiB", "non-torch 1.00 GiB", "CUDA graphs 1.00 GiB",
                        "KV cache 50.00 GiB", "unused budget 2.00 GiB"]
    assert segs[6:11] == ["weights 8.00 GiB", "activation peak 2.00 GiB", "non-torch 1.00 GiB", "KV cache 30.00 GiB",
                          "unused budget 2.00 GiB"]
    widths = [a["style"].split(";")[0] for t, a in p.tags if t == "span" and a.get("title", "").endswith("GiB")]
    assert widths[0] == "width:20.000%" and widths[4] == "width:62.500%"  # 16/80 and 50/80
    assert "70.00 of 72.00 GiB budget, 80.00 GiB total" in "".join(p.texts)


def test_html_no_best() -> None:
    page = render_capacity_html(no_best())
    p = parse(page)
    assert "No option meets the SLOs." in p.texts
    assert "<pre>" not in page and 'class="best"' not in page.split("<svg")[0]
    assert not any(t.startswith("best: ") for t in p.texts)


def test_html_escapes_hostile_values() -> None:
    page = render_capacity_html(hostile())
    p = parse(page)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert p.title == "Capacity plan: evil[/x]<script>alert(1)</script>:fire:"
    for ch in ("\x1b", "\x07", "\x9b", "\x00"):
        assert ch not in page


# --- a real browser ------------------------------------------------------------------------------------

def test_html_renders_in_headless_chromium(tmp_path: Any) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("VLLM_PLANNER_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (VLLM_PLANNER_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("no chromium on PATH")
    page = tmp_path / "capacity.html"
    page.write_text(render_capacity_html(hostile()), encoding="utf-8")
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert "<svg" in dom and "<polyline" in dom and '<table class="options">' in dom
    assert dom.count('class="membar"') == 3
    assert dom.count("<script") == 0  # the hostile model name stayed text
