#!/usr/bin/env python3
"""Extract every vLLM serving run from GPUStack's performance lab into a JSON file with provenance.

Usage: python benchmarks/extract_gpustack_lab.py GIT_DIR [--commit SHA] [--out PATH]

GIT_DIR is a clone (or bare mirror) of github.com/gpustack/gpustack. The lab's pages
(docs/performance-lab/<model>/<gpu>.md) print full `vllm bench serve` results under the serving
command that produced them. This script keeps the runs whose serving script is `vllm serve` (not
SGLang, TensorRT-LLM or MindIE), copies each result block verbatim, and parses its numbers; the
benchmark's shape (prompts, mean input/output tokens, concurrency cap) is read from the block itself,
so no lengths are guessed. Which runs the planner can replay is decided by the accuracy script, not here.

The output (tests/data/calibration/gpustack_perf_lab.json) is committed, so tests and CI never need
the clone; rerun this to refresh it from a newer commit.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "calibration" / "gpustack_perf_lab.json"
LAB = "docs/performance-lab"
REPO = "gpustack/gpustack"

# "Label:   number" lines of `vllm bench serve`'s result block, and the key each is stored under.
FIELDS = {
    "Successful requests": "num_successful",
    "Maximum request concurrency": "max_concurrency",
    "Request rate configured (RPS)": "request_rate",
    "Benchmark duration (s)": "duration_s",
    "Total input tokens": "total_input_tokens",
    "Total generated tokens": "total_generated_tokens",
    "Request throughput (req/s)": "request_throughput_rps",
    "Output token throughput (tok/s)": "output_tok_s_total",
    "Peak output token throughput (tok/s)": "peak_output_tok_s",
    "Peak concurrent requests": "peak_concurrent_requests",
    "Total Token throughput (tok/s)": "total_tok_s",
    "Mean TTFT (ms)": "ttft_ms_mean",
    "Median TTFT (ms)": "ttft_ms_median",
    "P99 TTFT (ms)": "ttft_ms_p99",
    "Mean TPOT (ms)": "tpot_ms_mean",
    "Median TPOT (ms)": "tpot_ms_median",
    "P99 TPOT (ms)": "tpot_ms_p99",
    "Mean ITL (ms)": "itl_ms_mean",
    "Median ITL (ms)": "itl_ms_median",
    "P99 ITL (ms)": "itl_ms_p99",
    "Mean E2EL (ms)": "e2el_ms_mean",
    "Median E2EL (ms)": "e2el_ms_median",
}
FENCE = re.compile(r"^\s*```")
INFO = re.compile(r'^\s*\?\?\?\+?\s+\w+\s+"(?P<title>[^"]*)"')
FIELD = re.compile(r"^\s*(?P<label>[^:#]+?):\s+(?P<value>[-\d.]+)\s*$")


def git_show(git_dir: Path, commit: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def lab_pages(git_dir: Path, commit: str) -> list[str]:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", commit, LAB],
                         check=True, capture_output=True, text=True).stdout.split()
    return sorted(p for p in out if p.endswith(".md") and "/references/" not in p and not p.endswith("overview.md"))


def code_blocks(text: str) -> list[tuple[str, str, int, list[str]]]:
    """(info title, nearest heading, first line number, lines) of every fenced block under a `??? info` title."""
    blocks, title, heading, cur, start = [], "", "", None, 0
    for n, line in enumerate(text.splitlines(), 1):
        if cur is not None:
            if FENCE.match(line):
                blocks.append((title, heading, start, cur))
                cur, title = None, ""
            else:
                cur.append(line.strip())
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif m := INFO.match(line):
            title = m["title"]
        elif FENCE.match(line) and title:
            cur, start = [], n + 1
    return blocks


def split_results(lines: list[str]) -> list[tuple[str, dict[str, float], list[str]]]:
    """One (label, metrics, verbatim lines) per result in a block; a `# ...` line before a result labels it."""
    out: list[tuple[str, dict[str, float], list[str]]] = []
    label, metrics, verbatim = "", {}, []
    for line in lines:
        if line.startswith("#"):
            if metrics:
                out.append((label, metrics, verbatim))
                metrics, verbatim = {}, []
            label = line.lstrip("#").strip()
            continue
        if "Serving Benchmark Result" in line and metrics:
            out.append((label, metrics, verbatim))
            label, metrics, verbatim = "", {}, []
        if line:
            verbatim.append(line)
        if (m := FIELD.match(line)) and m["label"].strip() in FIELDS:
            metrics[FIELDS[m["label"].strip()]] = float(m["value"])
    if metrics:
        out.append((label, metrics, verbatim))
    return out


def serve_command(lines: list[str]) -> str:
    """The serving script as one line (continuations joined)."""
    return re.sub(r"\s*\\\s*", " ", " ".join(line for line in lines if line)).strip()


def page_facts(text: str) -> dict[str, str]:
    """The page's Hardware line and vLLM version (under '### Hardware' and '### Engine Version')."""
    facts: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("### Hardware"):
            facts["hardware"] = next(x.strip() for x in lines[i + 1:] if x.strip())
        if line.startswith("### Engine Version"):
            for x in lines[i + 1:i + 6]:
                if m := re.match(r"^-\s*vLLM(?:-Ascend)?:?\s*(v?[\w.]+)", x.strip()):
                    facts["vllm_version"] = m[1].lstrip("v")
                    facts["engine"] = "vLLM-Ascend" if "Ascend" in x else "vLLM"
    return facts


def extract(git_dir: Path, commit: str) -> list[dict[str, Any]]:
    runs = []
    for page in lab_pages(git_dir, commit):
        text = git_show(git_dir, commit, page)
        facts = page_facts(text)
        serve = ""
        for title, heading, start, lines in code_blocks(text):
            low = title.lower()
            if "serving" in low and "script" in low:
                serve = serve_command(lines)
                continue
            if "result" not in low:
                continue
            if not re.match(r"^(\S+=\S+\s+)*(vllm serve|python3? -m vllm\.)", serve):
                continue  # an SGLang / TensorRT-LLM / MindIE run
            for k, (label, metrics, verbatim) in enumerate(split_results(lines)):
                n = metrics.get("num_successful")
                if not n:
                    continue
                runs.append({
                    "id": f"GS:{page.removeprefix(LAB + '/').removesuffix('.md')}:L{start}:{k}",
                    "source": f"https://github.com/{REPO}/blob/{commit}/{page}#L{start}",
                    "page": page, "section": heading, "block_title": title, "label": label,
                    "hardware": facts.get("hardware", ""), "engine": facts.get("engine", ""),
                    "vllm_version": facts.get("vllm_version", ""), "serve_command": serve,
                    "num_prompts": int(n),
                    "max_concurrency": int(metrics["max_concurrency"]) if "max_concurrency" in metrics else None,
                    "input_len_mean": round(metrics["total_input_tokens"] / n, 1),
                    "output_len_mean": round(metrics["total_generated_tokens"] / n, 1),
                    "metrics": metrics, "excerpt": "\n".join(verbatim),
                })
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("git_dir", type=Path, help="a clone or bare mirror of github.com/gpustack/gpustack")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    git_dir = args.git_dir / ".git" if (args.git_dir / ".git").exists() else args.git_dir
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", args.commit], check=True,
                            capture_output=True, text=True).stdout.strip()
    runs = extract(git_dir, commit)
    doc = {"source": f"https://github.com/{REPO}/tree/{commit}/{LAB}", "commit": commit,
           "extracted_by": "benchmarks/extract_gpustack_lab.py", "runs": runs}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(runs)} vLLM runs from {len({r['page'] for r in runs})} pages -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
