"""Issue 22 item 1: text from inputs is shown as text, never run as console markup or terminal control.

Model directories, nvidia-smi captures (GPU and process names, the driver version), vLLM logs and site
rule packs are untrusted. Each case feeds one of them text holding rich markup (`[/]`, `[bold red]`) and
terminal escape sequences (OSC title `ESC ] 0;evil BEL`, CSI `ESC [2J`, the 8-bit CSI 0x9b) and checks
the console output: the command's normal exit code, no "internal error" (MarkupError), no ESC or C1
character on stdout or stderr, and the literal text, markup brackets included, still visible.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.text import Text

from planner.render.console import make_console
from planner.render.text import cell, plain, safe, strip_controls
from tests.clirun import run

ROOT = Path(__file__).resolve().parents[2]
LLAMA = ROOT / "planner/models/catalog/meta-llama/Llama-3.1-8B-Instruct/config.json"
SMI = ROOT / "tests/data/nvidia-smi/1xH100-PCIe_smi_580_VM-busid_vLLM-proc.txt"
LOG = ROOT / "examples/logs/v1-0.19-h100-llama-3.1-8b-debug.log"
H100 = ["--gpu", "H100"]

MARKUP = "m[/]x"
ESCAPES = "e\x1b]0;evil\x07v\x1b[2Jx\x9b2Jy"  # shows as "evxy"
HOSTILE = "h[/]x[bold red]:smile:\x1b]0;evil\x07\x1b[2J\x9b31mz"  # shows as "h[/]x[bold red]:smile:z"
SHOWN = "h[/]x[bold red]:smile:z"
GPU_NAME = "NVIDIA H100 P[/]\x1b[2Jz"  # shows as "NVIDIA H100 P[/]z"


def model_dir(root: Path, name: str) -> str:
    d = root / name
    d.mkdir(parents=True)
    shutil.copy(LLAMA, d / "config.json")
    return str(d)


def smi_capture(root: Path, replace: dict[str, str]) -> str:
    text = SMI.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    p = root / "smi.txt"
    p.write_text(text)
    return str(p)


def site_pack(root: Path, text: str = HOSTILE) -> str:
    """A site pack whose warn message, recommend, forbid and override reasons hold `text`, kept in a
    directory named `text` (so the pack's source path holds it too)."""
    d = root / text
    d.mkdir(parents=True)
    # Packs refuse control characters in their strings since issue 22 item 11 (lint): the pack's own texts carry
    # the markup part; the escapes stay in its directory name, which the source path shows.
    q = json.dumps(strip_controls(text))  # a YAML double-quoted scalar
    p = d / "evil.yaml"
    p.write_text(
        "schema: 1\nname: evil\nversion: 1.0.0\nlayer: site\n"
        f"overrides:\n  - rule: rec.seqs.latency\n    enabled: false\n    reason: {q}\n"
        "rules:\n  - id: site.evil.all\n    description: d\n    stage: recommend\n    priority: 900\n"
        "    when:\n      g: {fact: gpu}\n"
        f"    then:\n      - warn: W-EVIL\n        message: {q}\n"
        f"      - recommend: gpu_memory_utilization\n        value: 0.85\n        reason: {q}\n"
        "  - id: site.evil.forbid\n    description: d\n    stage: sizing\n"
        "    when:\n      cand: {fact: candidate, tensor_parallel_size: {gt: 1}}\n"
        f"    then:\n      - forbid: candidate\n        reason: {q}\n")
    return str(p)


def facts_file(root: Path) -> str:
    p = root / "facts.yaml"
    fact_id = json.dumps("gpu:" + HOSTILE)
    p.write_text("- {type: gpu, id: " + fact_id + ", name: NVIDIA H100 80GB HBM3, family: hopper}\n")
    return str(p)


def check_log_file(root: Path) -> str:
    d = root / HOSTILE
    d.mkdir(parents=True)
    p = d / "vllm.log"
    text = LOG.read_text()
    old = "'model': 'meta-llama/Llama-3.1-8B-Instruct'"
    assert old in text
    p.write_text(text.replace(old, f"'model': '{HOSTILE}'"))
    return str(p)


def pack_test_file(root: Path) -> str:
    pack = site_pack(root)
    p = root / "evil.test.yaml"
    p.write_text(f"layers: [{json.dumps(pack)}]\n"
                 "facts:\n  - {type: gpu, key: '0', name: NVIDIA H100 80GB HBM3, family: hopper}\n"
                 f"expect: {{fired: [site.evil.all]}}\ncases:\n  - name: {json.dumps(HOSTILE)}\n"
                 "    expect: {not_fired: [site.evil.all]}\n")
    return str(p)


LLAMA_ID = ["--model", "meta-llama/Llama-3.1-8B-Instruct"]
# (id, build(root) -> argv, exit code, text that must show)
Case = tuple[str, Callable[[Path], list[str]], int, str]
CASES: list[Case] = [
    # model directories
    ("plan-model-markup", lambda r: ["plan", "--model", model_dir(r, MARKUP), *H100], 0, MARKUP),
    ("plan-model-escapes", lambda r: ["plan", "--model", model_dir(r, ESCAPES), *H100], 0, "evxy"),
    ("plan-explain-model-markup", lambda r: ["plan", "--explain", "--model", model_dir(r, MARKUP), *H100], 0, MARKUP),
    ("plan-explain-model-escapes", lambda r: ["plan", "--explain", "--model", model_dir(r, ESCAPES), *H100], 0,
     "evxy"),
    ("plan-infeasible-model-markup", lambda r: ["plan", "--model", model_dir(r, MARKUP), "--vram-gib", "4"], 3,
     MARKUP),
    ("generate-model-and-dir", lambda r: ["generate", "--model", model_dir(r, HOSTILE), *H100, "-o",
                                          str(r / ("out" + HOSTILE))], 0, "out" + SHOWN),
    # nvidia-smi captures: a process name, a GPU name
    ("plan-process-name", lambda r: ["plan", *LLAMA_ID, "--from-file",
                                     smi_capture(r, {"VLLM::EngineCore": HOSTILE.replace(" ", "")})], 0,
     "h[/]x[bold"),
    ("plan-gpu-name", lambda r: ["plan", *LLAMA_ID, "--vram-gib", "80", "--from-file",
                                 smi_capture(r, {"NVIDIA H100 PCIe": GPU_NAME})], 0, "P[/]z"),
    ("detect-gpu-name", lambda r: ["detect", "--from-file", smi_capture(r, {"NVIDIA H100 PCIe": GPU_NAME})], 0,
     "P[/]z"),
    # a vLLM log: the model it names, and its path
    ("check-log-model", lambda r: ["check-log", check_log_file(r), *LLAMA_ID], 0, SHOWN),
    # site rule packs: warn message, recommend reason, override reason, source path
    ("plan-explain-pack", lambda r: ["plan", "--explain", *LLAMA_ID, *H100, "--rules", site_pack(r)], 0,
     SHOWN),
    ("sweep-pack-forbid-reason", lambda r: ["sweep", *LLAMA_ID, *H100, "--gpus", "2", "--rules", site_pack(r)], 0,
     SHOWN),
    ("rules-show-pack", lambda r: ["rules", "show", "--rules", site_pack(r)], 0, SHOWN),
    ("rules-show-effective-pack", lambda r: ["rules", "show", "--effective", "--rules", site_pack(r)], 0,
     SHOWN),
    ("rules-list-pack", lambda r: ["rules", "list", "--rules", site_pack(r)], 0, SHOWN),
    ("rules-explain-pack", lambda r: ["rules", "explain", "rec.seqs.latency", "--facts", facts_file(r), "--rules",
                                      site_pack(r)], 0, SHOWN),
    ("rules-explain-fact-id", lambda r: ["rules", "explain", "site.evil.all", "--facts", facts_file(r), "--rules",
                                         site_pack(r)], 0, "gpu:" + SHOWN),
    ("rules-test-case-name", lambda r: ["rules", "test", pack_test_file(r), "--evaluator", "reference"], 1,
     SHOWN),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_text_is_shown_as_text(case: Case, tmp_path: Path) -> None:
    _, build, code, shown = case
    rc, out, err = run(*build(tmp_path))
    assert "internal error" not in err, err
    assert rc == code, (rc, err, out)
    for stream in (out, err):
        assert "\x1b" not in stream and "\x9b" not in stream and "\x07" not in stream, repr(stream)
    assert shown in out, out


def test_json_keeps_the_raw_text(tmp_path: Path) -> None:
    """JSON is data: it carries the input as it was (JSON escapes the control characters itself)."""
    rc, out, _ = run("plan", "--json", "--model", model_dir(tmp_path, HOSTILE), *H100)
    assert rc == 0 and "\x1b" not in out
    assert json.loads(out)["model"]["name"].endswith(HOSTILE)


# --- the sanitiser itself (planner.render.text) ------------------------------------------------------------

def test_strip_controls_removes_7_and_8_bit_sequences_and_single_controls() -> None:
    assert strip_controls("a\x1b[1;31mb\x9b2Jc\x1b]8;;http://x\x1b\\d\x9d0;t\x9ce\x1bPq\x07f") == "abcdef"
    assert strip_controls("a\x00b\rc\x08d\x7fe\x85f\x1b7g\n\th") == "abcdefg\n\th"
    assert strip_controls("a\x1b]0;title") == "a0;title"  # no terminator: only the introducer goes
    assert strip_controls("\x1b\x1b[2Jx\x1b") == "x"
    assert plain("[/]\x1b[2J") == "[/]"


def test_safe_is_literal_under_markup_and_cell_is_never_markup() -> None:
    s = "x[/x] [bold]y[/] \\[z] :smile:\x1b[2J"
    assert Text.from_markup(safe(s), emoji=False).plain == strip_controls(s)
    assert cell(s).plain == strip_controls(s) and not cell(s).spans


def test_the_console_strips_controls_that_missed_the_sanitiser() -> None:
    """Second line of defence: text rich writes never carries a control from its content."""
    import io

    c = make_console()
    c.file = io.StringIO()
    c.print("a\x1b]0;evil\x1b\\b\x1b[2Jc\x9b1md", markup=False)
    c.print(Text("e\x1b[31mf"), ":smile:")
    assert c.file.getvalue() == "abcd\nef :smile:\n"
