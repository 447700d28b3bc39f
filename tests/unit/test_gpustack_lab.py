"""The GPUStack performance-lab data: extraction from the pages, and how the accuracy script replays it.

The extractor runs on a page written here (a git repository the test creates), so every expected value
is read off that page by hand; the committed JSON is checked against facts of the published pages.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


ex = _load("extract_gpustack_lab")
pa = _load("perf_accuracy")

PAGE = '''# Optimizing Model-X on H100

### Hardware

A single NVIDIA H100 SXM GPU.

### Engine Version

- vLLM: v0.11.0
- SGLang: v0.5.3

### 1. Choosing the Inference Engine

??? info "Serving script"
    ```bash
    vllm serve Qwen/Qwen3-8B \\
        --max-model-len 32768
    ```
??? info "Benchmark result"
    ```
    ============ Serving Benchmark Result ============
    Successful requests:                     100
    Maximum request concurrency:             4
    Benchmark duration (s):                  44.40
    Total input tokens:                      23260
    Total generated tokens:                  22061
    Output token throughput (tok/s):         496.88
    Median TTFT (ms):                        60.26
    Median TPOT (ms):                        7.40
    ==================================================
    ```

??? info "Serving script"
    ```bash
    python3 -m sglang.launch_server --model-path Qwen/Qwen3-8B
    ```
??? info "Benchmark result"
    ```
    Successful requests:                     100
    Median TPOT (ms):                        7.14
    ```

### Other Benchmark Cases

??? info "Baseline serving script"
    ```bash
    vllm serve Qwen/Qwen3-8B
    ```
??? info "Baseline benchmark results"
    ```bash
    # random 4K input
    ============ Serving Benchmark Result ============
    Successful requests:                     500
    Total input tokens:                      1997950
    Total generated tokens:                  99800
    Median TPOT (ms):                        62.08
    ==================================================

    # random 128 input
    ============ Serving Benchmark Result ============
    Successful requests:                     1000
    Total input tokens:                      127700
    Total generated tokens:                  4000
    Median TPOT (ms):                        1292.78
    ==================================================
    ```
'''


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    repo = tmp_path_factory.mktemp("gpustack")
    page = repo / "docs" / "performance-lab" / "model-x" / "h100.md"
    page.parent.mkdir(parents=True)
    page.write_text(PAGE)
    (repo / "docs" / "performance-lab" / "overview.md").write_text("# no runs here\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "page"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return commit, ex.extract(repo / ".git", commit)


def test_extracts_only_vllm_runs_with_their_command(extracted: tuple[str, list[dict]]) -> None:
    commit, runs = extracted
    assert len(runs) == 3  # the SGLang block is skipped
    first = runs[0]
    assert first["serve_command"] == "vllm serve Qwen/Qwen3-8B --max-model-len 32768"  # continuation joined
    assert first["vllm_version"] == "0.11.0" and first["hardware"] == "A single NVIDIA H100 SXM GPU."
    assert first["section"] == "1. Choosing the Inference Engine"
    assert first["source"].startswith(f"https://github.com/gpustack/gpustack/blob/{commit}/docs/performance-lab/")
    assert first["num_prompts"] == 100 and first["max_concurrency"] == 4
    assert first["input_len_mean"] == 232.6 and first["output_len_mean"] == 220.6  # 23260 / 100, 22061 / 100
    assert first["metrics"]["ttft_ms_median"] == 60.26 and first["metrics"]["tpot_ms_median"] == 7.40


def test_splits_a_block_by_its_labels(extracted: tuple[str, list[dict]]) -> None:
    _, runs = extracted
    four_k, short = runs[1], runs[2]
    assert (four_k["label"], short["label"]) == ("random 4K input", "random 128 input")
    assert four_k["serve_command"] == short["serve_command"] == "vllm serve Qwen/Qwen3-8B"
    assert four_k["max_concurrency"] is None  # no cap printed: every prompt sent at t=0
    assert four_k["input_len_mean"] == 3995.9 and four_k["output_len_mean"] == 199.6
    assert short["metrics"]["tpot_ms_median"] == 1292.78 and short["num_prompts"] == 1000


def test_a_flag_label_overrides_the_serving_command() -> None:
    run = {"serve_command": "VLLM_X=1 vllm serve openai/gpt-oss-120b --max-model-len 32768 --async-scheduling "
                            "--max-num-batched-tokens 4096 -tp 2 --reasoning-parser x --made-up",
           "label": "--max-num-batched-tokens 8192"}
    f = pa.lab_flags(run)
    assert f["model"] == "openai/gpt-oss-120b" and f["max_num_batched_tokens"] == 8192 and f["tp"] == 2
    assert f["async_scheduling"] is True and f["max_model_len"] == 32768
    assert f["env"] == ["VLLM_X=1"] and f["unknown"] == ["--made-up"]


def test_committed_lab_data_matches_the_published_pages() -> None:
    doc = json.loads((ROOT / "tests" / "data" / "calibration" / "gpustack_perf_lab.json").read_text())
    assert len(doc["commit"]) == 40
    runs = {r["id"]: r for r in doc["runs"]}
    # qwen3-8b/h100-latency.md, "ShareGPT BS=1": 100 prompts at max-concurrency 1, median TTFT 60.38 ms
    bs1 = next(r for r in runs.values() if r["page"].endswith("qwen3-8b/h100-latency.md") and r["label"] == "BS=1")
    assert bs1["max_concurrency"] == 1 and bs1["metrics"]["ttft_ms_median"] == 60.38
    assert all(r["serve_command"].split()[0] == "vllm" or "=" in r["serve_command"].split()[0]
               for r in doc["runs"])


def test_lab_split_calibrates_only_on_closed_loop_runs_without_async_scheduling() -> None:
    calibrate, held, excluded, _ = pa._lab(pa.DATA)
    assert calibrate and held and excluded
    for p in calibrate:
        assert p.prompts is None and "async-scheduling" not in p.note
    assert all(p.prompts or "async-scheduling" in p.note for p in held)
    replayed = {p.id for p in calibrate} | {p.id for p in held}
    assert not replayed & set(excluded)
    # runs already in perf_points.json (P041, P061, ...) are not replayed twice
    assert "in the calibration set (perf_points.json)" in excluded.values()
