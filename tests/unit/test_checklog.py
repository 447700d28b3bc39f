"""check-log: the parser against every calibration launch, the comparison, and the CLI.

The calibration rows (tests/data/calibration/vllm_launches.json) were parsed independently from the
same excerpts; the parser must reproduce every number printed in an excerpt exactly. Where a row's
value did not come from a vLLM log line (issue prose, a model-name inference, settings from parts of
the log file outside the excerpt), the parser must stay silent (None), and EXCEPTIONS says why.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import checklog
from planner.checklog import CONTRACT_KEYS, ReportedLaunch, compare, parse_vllm_log, reported_view
from planner.cli import cli
from planner.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads((ROOT / "tests" / "data" / "calibration" / "vllm_launches.json").read_text())
ROWS = {row["id"]: row for row in DATA["launches"]}
LOGS = ROOT / "examples" / "logs"
CATALOG = ROOT / "planner" / "models" / "catalog"

# parser field -> the row's top-level field
TOP = {k: k for k in ("vllm_version", "engine", "model", "tensor_parallel_size", "pipeline_parallel_size",
                      "data_parallel_size", "gpu_memory_utilization", "max_model_len", "dtype", "quantization",
                      "kv_cache_dtype", "enforce_eager", "enable_prefix_caching", "max_num_seqs",
                      "max_num_batched_tokens", "block_size")}
TOP["total_gpu_memory_gib"] = "gpu_total_memory_gib"
# parser field -> the row's `reported` field
REPORTED = {
    "weights_gib": "weights_gib", "weights_unit": "weights_unit_as_printed", "kv_cache_gib": "kv_cache_available_gib",
    "kv_cache_tokens": "kv_cache_tokens", "gpu_blocks": "gpu_blocks", "cpu_blocks": "cpu_blocks",
    "max_concurrency": "max_concurrency", "max_concurrency_tokens": "max_concurrency_tokens_per_request",
    "activation_peak_gib": "peak_activation_gib", "peak_torch_memory_gib": "peak_torch_memory_gib",
    "non_torch_gib": "non_torch_gib", "cuda_graph_gib": "cuda_graph_gib",
    "cuda_graph_estimated_gib": "cuda_graph_estimated_gib", "total_non_kv_cache_gib": "total_non_kv_cache_gib",
    "free_memory_on_startup_gib": "free_memory_on_startup_gib", "requested_memory_gib": "requested_memory_gib",
    "initial_memory_usage_gib": "initial_memory_usage_gib", "usable_memory_gib": "usable_memory_gib",
}

PROSE = "stated in the issue's prose, not in a vLLM log line"
INFERRED = "inferred by the dataset's author (see the row's `inferred`/notes), not printed in the excerpt"
# row id -> {parser field: (what the parser must return, why the dataset differs)}
EXCEPTIONS: dict[str, dict[str, tuple[object, str]]] = {
    "vllm#10517/kaspersiminski/20k": {"model": (None, PROSE), "tensor_parallel_size": (None, INFERRED),
                                      "pipeline_parallel_size": (None, INFERRED)},
    "vllm#10511/youkaichao/llama3-8b-tp1": {"tensor_parallel_size": (None, INFERRED),
                                            "pipeline_parallel_size": (None, INFERRED)},
    "vllm#21348/Qwen3-235B-A22B-FP8/4xH100": {
        "model": ("/path/to/Qwen3-235B-A22B-FP8", "the pasted command serves a local path; the row names the hub id"),
        "pipeline_parallel_size": (None, INFERRED), "quantization": (None, "an FP8 checkpoint, no --quantization")},
    "vllm#17469/Qwen3-30B-A3B/4xA10": {"vllm_version": (None, PROSE), "model": (None, PROSE),
                                       "tensor_parallel_size": (None, PROSE),
                                       "pipeline_parallel_size": (None, INFERRED), "enforce_eager": (None, INFERRED)},
    "repofile:38962983769/Qwen3-235B-A22B-Instruct-2507-FP8/8xL40S": {
        k: (None, "from the full log file; the excerpt does not show it")
        for k in ("dtype", "quantization", "kv_cache_dtype", "enforce_eager", "enable_prefix_caching")},
    "vllm#17122/Llama-3.1-8B-Instruct/L40S": {"model": (None, PROSE), "tensor_parallel_size": (None, PROSE),
                                              "pipeline_parallel_size": (None, INFERRED),
                                              "enforce_eager": (None, INFERRED)},
    "vllm#2031/Llama-2-7b/A100-80GB": {
        "engine": (None, "a PR description; no log line shows the engine"), "model": (None, PROSE),
        "tensor_parallel_size": (None, PROSE), "pipeline_parallel_size": (None, INFERRED),
        "gpu_memory_utilization": (None, PROSE),
        "gpu_blocks": (7449, "the PR quotes 'Current main: # GPU blocks: 7449' first; the row records the PR's 7351")},
    "vllm#12569/Llama-3.1-70B-w8a8/1gpu": {"tensor_parallel_size": (None, INFERRED),
                                           "pipeline_parallel_size": (None, INFERRED),
                                           "quantization": (None, "inferred from the model name"),
                                           "enforce_eager": (None, INFERRED)},
    "vllm#33155/gpt-oss-120b/H100/v0.14.1": {"vllm_version": (None, "in the issue title"), "model": (None, PROSE),
                                             "tensor_parallel_size": (None, PROSE),
                                             "pipeline_parallel_size": (None, INFERRED),
                                             "quantization": (None, "gpt-oss checkpoints are MXFP4; not printed")},
    "web:myoceane/gpt-oss-20b/A100": {"tensor_parallel_size": (None, INFERRED),
                                      "pipeline_parallel_size": (None, INFERRED),
                                      "quantization": (None, "in the blog's prose, not a log line")},
    "vllm#6746/Llama-3.1-405B-FP8/8xH100": {
        "model": (None, "the log shows a local path only in 'Starting to load model /models/...'"),
        "tensor_parallel_size": (None, PROSE), "pipeline_parallel_size": (None, INFERRED),
        "quantization": (None, "an FP8 checkpoint; no --quantization shown")},
}
LLMD_OUTSIDE_EXCERPT = ("max_num_seqs", "max_num_batched_tokens")  # the llm-d rows took these from the full log


def expected_for(row: dict) -> dict[str, object]:
    exp = {f: row.get(k) for f, k in TOP.items()}
    exp.update({f: row["reported"].get(k) for f, k in REPORTED.items()})
    if row["id"].startswith("llmd-planner"):
        exp.update({k: None for k in LLMD_OUTSIDE_EXCERPT})
    exp.update({f: v for f, (v, _why) in EXCEPTIONS.get(row["id"], {}).items()})
    return exp


@pytest.mark.parametrize("row_id", list(ROWS))
def test_parse_matches_dataset(row_id: str) -> None:
    row = ROWS[row_id]
    r = parse_vllm_log(row["source"]["excerpt"], row_id)
    got = {f: getattr(r, f) for f in expected_for(row)}
    assert got == expected_for(row)


def test_exceptions_name_real_rows_and_fields() -> None:
    for row_id, fields in EXCEPTIONS.items():
        assert row_id in ROWS
        assert set(fields) <= set(TOP) | set(REPORTED)


def test_per_rank_variants_match_dataset() -> None:
    row = ROWS["vllm#20665/DeepSeek-V2-Lite/tp2pp2-L4"]
    r = parse_vllm_log(row["source"]["excerpt"], row["id"])
    want = row["reported"]["kv_cache_available_gib_per_rank"]
    assert r.per_rank["kv_cache_gib"] == want
    assert r.kv_cache_gib == min(want.values())  # vLLM sizes the pool from the smallest rank
    row = ROWS["llmd-planner-v0.19.0/meta-llama-llama-3-1-8b---h100-80gb--tp1pp2dp1--8192"]
    r = parse_vllm_log(row["source"]["excerpt"], row["id"])
    variants = row["reported"]["per_rank_profile_variants"]
    assert sorted(r.per_rank["activation_peak_gib"].values()) == sorted(v["peak_activation_gib"] for v in variants)
    assert r.activation_peak_gib == variants[0]["peak_activation_gib"]  # rank 0 (Worker_PP0)


def test_rank_zero_preferred_and_precision_noise_ignored() -> None:
    row = ROWS["repofile:38962983769/Qwen3-235B-A22B-Instruct-2507-FP8/8xL40S"]
    r = parse_vllm_log(row["source"]["excerpt"], row["id"])
    assert r.weights_gib == 27.7183  # "Model loading took" over the summary's rounded "27.72 GiB for weight"
    assert "weights_gib" not in r.per_rank


def test_reported_view_derivations_are_noted() -> None:
    row = ROWS["vllm#10517/kaspersiminski/20k"]
    view, notes = reported_view(parse_vllm_log(row["source"]["excerpt"], row["id"]))
    assert set(view) == set(CONTRACT_KEYS)
    assert view["activation_peak_gib"] == round(17.06 - 14.9888, 2)  # V0 peak_torch_memory includes the weights
    assert view["kv_cache_tokens"] == 1952 * 16 == row["inferred"]["kv_cache_tokens"]["value"]
    assert len(notes) == 2


def test_ansi_compose_and_command_line() -> None:
    text = ("\x1b[0;36m(EngineCore_DP0 pid=7)\x1b[0;0m INFO [gpu_model_runner.py:1] Model loading took 1.5 GiB memory\n"
            "qwen3-1  | (VllmWorker rank=1 pid=8) INFO Available KV cache memory: 3.25 GiB\n"
            "vllm serve org/m \\\n  --tensor-parallel-size=2 --max-model-len 32K --enforce-eager\n")
    r = parse_vllm_log(text, "t.log")
    assert (r.weights_gib, r.kv_cache_gib, r.engine) == (1.5, 3.25, "V1")
    assert (r.model, r.tensor_parallel_size, r.max_model_len, r.enforce_eager) == ("org/m", 2, 32768, True)


@pytest.mark.parametrize("text", ["", "\n\n", "hello world\nnothing to see", "vllm serve org/model --tp 2"])
def test_no_startup_lines_is_input_error(text: str) -> None:
    with pytest.raises(InputError, match=r"^no vLLM startup lines found in x\.log$"):
        parse_vllm_log(text, "x.log")


FRAGMENTS = [ln for row in DATA["launches"] for ln in row["source"]["excerpt"].splitlines()[:6]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=200), st.sampled_from(FRAGMENTS),
                          st.builds(lambda a, b: a[: len(a) // 2] + b, st.sampled_from(FRAGMENTS), st.text())),
                max_size=8))
def test_fuzz_only_input_error_escapes(parts: list[str]) -> None:
    try:
        r = parse_vllm_log("\n".join(parts), "fuzz.log")
    except InputError:
        return
    assert isinstance(r, ReportedLaunch)
    reported_view(r)


def test_compare_shapes() -> None:
    plan = {"vllm_version": "0.19.0", "model": {"name": "m"},
            "config": {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "gpu_memory_utilization": 0.9,
                       "max_model_len": 4096},
            "memory": {"per_gpu": {k: 2**30 for k in ("weights_bytes", "activation_peak_bytes", "non_torch_bytes",
                                                      "cuda_graph_bytes", "kv_cache_bytes")},
                       "kv_cache_tokens": 1000, "max_concurrency": 1.5}}
    rep = ReportedLaunch(source="s", vllm_version="0.19.0", weights_gib=2.0, kv_cache_tokens=800)
    out = compare(rep, plan)
    assert set(out) == {"reported", "predicted", "differences"}
    assert set(out["reported"]) == set(out["predicted"]) == set(CONTRACT_KEYS)
    assert out["differences"]["weights_gib"] == {"delta": -1.0, "relative": -0.5}
    assert out["differences"]["kv_cache_tokens"] == {"delta": 200, "relative": 0.25}
    assert out["differences"]["non_torch_gib"] is None and out["differences"]["vllm_version"] is None


# ------------------------------------------------------------------------------------------- CLI


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


EXAMPLES = {
    "v1-0.19-h100-llama-3.1-8b-debug.log": ((), {
        "vllm_version": "0.19.0", "model": "meta-llama/Llama-3.1-8B-Instruct", "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1, "gpu_memory_utilization": 0.95, "max_model_len": 2048, "weights_gib": 14.99,
        "activation_peak_gib": 1.89, "non_torch_gib": 0.25, "cuda_graph_gib": 0.91, "kv_cache_gib": 58.11,
        "kv_cache_tokens": 476016, "max_concurrency": 232.43}),
    "v1-0.19-h100-tp4-llama-3.1-8b.log": ((), {
        "vllm_version": "0.19.0", "model": "meta-llama/Llama-3.1-8B-Instruct", "tensor_parallel_size": 4,
        "pipeline_parallel_size": 1, "gpu_memory_utilization": 0.95, "max_model_len": 8192, "weights_gib": 3.77,
        "activation_peak_gib": 1.89, "non_torch_gib": 2.13, "cuda_graph_gib": 0.67, "kv_cache_gib": 67.44,
        "kv_cache_tokens": 2209792, "max_concurrency": 269.75}),
    "v0-rtx3090-llama-3.1-8b.log": (("--model", "meta-llama/Llama-3.1-8B-Instruct"), {
        "vllm_version": None, "model": None, "tensor_parallel_size": None, "pipeline_parallel_size": None,
        "gpu_memory_utilization": 0.9, "max_model_len": 20000, "weights_gib": 14.9888, "activation_peak_gib": 2.07,
        "non_torch_gib": 0.35, "cuda_graph_gib": None, "kv_cache_gib": 3.81, "kv_cache_tokens": 31232,
        "max_concurrency": 1.56}),
    "v1-0.10.2-8xl40s-qwen3-235b-fp8-ep.log": (("--model", str(ROOT / "examples" / "models" / "Qwen3-235B-A22B-FP8")), {
        "vllm_version": "0.10.2", "model": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", "tensor_parallel_size": 8,
        "pipeline_parallel_size": 1, "gpu_memory_utilization": 0.9, "max_model_len": 32768, "weights_gib": 27.7183,
        "activation_peak_gib": 1.4, "non_torch_gib": 0.21, "cuda_graph_gib": 3.45, "kv_cache_gib": 10.64,
        "kv_cache_tokens": 238208, "max_concurrency": 7.27}),
}


def test_examples_are_all_tested() -> None:
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_check_log_examples_json(name: str) -> None:
    extra, want = EXAMPLES[name]
    path = LOGS / name
    assert path.read_text().startswith("# source: calibration row ")
    rc, out, err = run("check-log", str(path), *extra, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert {"reported", "predicted", "differences"} <= set(data)
    assert list(data["reported"]) == list(CONTRACT_KEYS) and list(data["predicted"]) == list(CONTRACT_KEYS)
    assert data["reported"] == want
    pred = data["predicted"]
    assert pred["tensor_parallel_size"] == (want["tensor_parallel_size"] or 1)  # the log's settings are pinned
    assert pred["max_model_len"] == want["max_model_len"]
    assert pred["gpu_memory_utilization"] == want["gpu_memory_utilization"]
    assert all(isinstance(pred[k], float) for k in checklog.MEMORY_KEYS)


def test_sort_sampler_log_replays_its_activation_peak() -> None:
    """0.10.2 pip install without FlashInfer (8 x L40S, TP8 + EP): the sampler warm-up sorts the vocabulary.

    Hand calculation: the profile's dummy batch is min(T=2048, S=256) = 256 requests x 151,936 vocab logits at the
    spec's measured 38 B per logit (sort-based top-p, vllm-accounting.md 1.4) = 1.378 GiB; the log prints 1.4 GiB.
    KV = 39.98 requested - 27.72 weights - 1.378 - 0.21 non-torch = 10.67 GiB per GPU; the log's smallest rank: 10.64.
    """
    path = LOGS / "v1-0.10.2-8xl40s-qwen3-235b-fp8-ep.log"
    r = parse_vllm_log(path.read_text(), str(path))
    assert r.sampler == "sort" and r.enable_expert_parallel is True
    rc, out, err = run("check-log", str(path), "--model", str(ROOT / "examples" / "models" / "Qwen3-235B-A22B-FP8"),
                       "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert abs(data["predicted"]["activation_peak_gib"] - 256 * 151936 * 38 / 2**30) < 0.01
    assert abs(data["predicted"]["kv_cache_gib"] - (39.98 - 27.72 - 1.378 - 0.21)) < 0.1
    assert abs(data["differences"]["kv_cache_tokens"]["relative"]) < 0.01
    assert any("sort top-p/top-k sampler" in w for w in data["warnings"])


@pytest.mark.parametrize(("line", "path"), [
    ("WARNING 09-24 20:46:11 [topk_topp_sampler.py:69] FlashInfer is not available. Falling back to the PyTorch-native "
     "implementation of top-p & top-k sampling. For the best performance, please install FlashInfer.", "sort"),
    ("INFO [topk_topp_sampler.py:44] Currently, FlashInfer top-p & top-k sampling sampler is disabled because "
     "FlashInfer>=v0.2.3 is not backward compatible. Falling back to the PyTorch-native implementation of top-p & "
     "top-k sampling.", "sort"),
    ("INFO [topk_topp_sampler.py:45] Using FlashInfer for top-p & top-k sampling.", "fused"),
    ("INFO [topk_topp_sampler.py:50] Using Triton for top-p & top-k sampling.", "fused"),
    # newer wordings do not say what the fallback is (Triton kernel or sort): nothing is pinned
    ("WARNING [topk_topp_sampler.py:69] FlashInfer top-p/top-k sampling unavailable: unsupported compute capability "
     "7.5; falling back. Set VLLM_USE_FLASHINFER_SAMPLER=0 to silence.", None),
    ("INFO [topk_topp_sampler.py:60] FlashInfer top-p/top-k sampling disabled via VLLM_USE_FLASHINFER_SAMPLER=0.",
     None),
])
def test_sampler_line_is_read(line: str, path: str | None) -> None:
    text = "INFO [gpu_worker.py:298] Available KV cache memory: 10.65 GiB\n" + line
    assert parse_vllm_log(text, "x.log").sampler == path


def test_check_log_console_table() -> None:
    rc, out, err = run("check-log", str(LOGS / "v1-0.19-h100-tp4-llama-3.1-8b.log"))
    assert rc == 0, err
    for word in ("quantity", "reported", "predicted", "difference", "kv_cache_tokens", "2,209,792"):
        assert word in out


def test_check_log_bad_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    binary = tmp_path / "bin.log"
    binary.write_bytes(bytes(range(256)) * 4)
    big = tmp_path / "big.log"
    big.write_text("x" * 2048)
    cases = [(tmp_path / "missing.log", "no such file"), (empty, "no vLLM startup lines found in"),
             (binary, "not UTF-8"), (tmp_path, "is a directory")]
    for path, words in cases:
        rc, _out, err = run("check-log", str(path), "--json")
        assert rc == 2, (path, err)
        line = one_error_line(err)
        assert words in line and str(path) in line
    monkeypatch.setattr(checklog, "MAX_LOG_BYTES", 1024)
    rc, _out, err = run("check-log", str(big))
    assert rc == 2 and "larger than" in one_error_line(err)


def test_check_log_unloadable_model_says_pass_model(tmp_path: Path) -> None:
    """A log naming a model directory that is not here: what the log says, exit 0, and the --model DIR note."""
    log = tmp_path / "v.log"
    log.write_text("(APIServer pid=1) INFO non-default args: {'model': '/nonexistent/dir/model', "
                   "'max_model_len': 4096}\n"
                   "(EngineCore pid=2) INFO Free memory on device (78.68/79.19 GiB) on startup.\n")
    rc, out, err = run("check-log", str(log))
    assert rc == 0, err
    assert "4,096" in out and "/nonexistent/dir/model" in out
    note = [x for x in out.splitlines() if x.startswith("note: ")]
    assert len(note) == 1 and "--model DIR" in note[0] and "no such model directory: /nonexistent/dir/model" in note[0]


# ------------------------------------------------------------------------------ check-log without a config (issue 21)

NO_CONFIG_ID = "acme/Llama-3.1-8B-Finetune"  # neither bundled nor a directory; the hub is offline in these runs


def _renamed_example(tmp_path: Path, name: str, model: str) -> Path:
    """A tmp copy of a real example log whose model id is `model`."""
    text = (LOGS / name).read_text()
    original = EXAMPLES[name][1]["model"]
    assert original and original in text
    log = tmp_path / name
    log.write_text(text.replace(original, model))
    return log


def _offline(*args: str, tmp_path: Path) -> tuple[int, str, str]:
    """`vllm-planner ARGS` in a subprocess with the hub offline (HF_HUB_OFFLINE=1, an endpoint nothing listens
    on): huggingface_hub reads both at import time, so an in-process run could not set them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))},
           "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-m", "planner.cli", *args], capture_output=True, text=True, env=env,
                       timeout=120, cwd=ROOT)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("name", ["v1-0.19-h100-tp4-llama-3.1-8b.log", "v1-0.19-h100-llama-3.1-8b-debug.log"])
def test_check_log_without_config_json(name: str, tmp_path: Path) -> None:
    """Everything the log read, `predicted` keys all null (the contract's keys, in order), a note, exit 0."""
    log = _renamed_example(tmp_path, name, NO_CONFIG_ID)
    rc, out, err = _offline("check-log", str(log), "--json", tmp_path=tmp_path)
    assert rc == 0, err
    data = json.loads(out)
    assert list(data["reported"]) == list(CONTRACT_KEYS) and list(data["predicted"]) == list(CONTRACT_KEYS)
    assert data["reported"] == {**EXAMPLES[name][1], "model": NO_CONFIG_ID}  # every number the log printed
    assert all(v is None for v in data["predicted"].values())
    assert all(v is None for v in data["differences"].values())
    assert data["feasible"] is None
    assert data["note"].startswith(f"no prediction: cannot load the model {NO_CONFIG_ID!r} named in the log: ")
    assert "--model DIR" in data["note"] and "adds the prediction" in data["note"]
    assert data["note"] in data["warnings"]
    assert data["settings"]["dtype"] == "bfloat16" and data["settings"]["engine"] == "V1"
    assert data["hardware"]["memory_gib_per_gpu"] == 79.19


def test_check_log_without_config_console(tmp_path: Path) -> None:
    log = _renamed_example(tmp_path, "v1-0.19-h100-tp4-llama-3.1-8b.log", NO_CONFIG_ID)
    rc, out, err = _offline("check-log", str(log), tmp_path=tmp_path)
    assert rc == 0, err
    for word in ("reported", "weights_gib", "3.77", "kv_cache_gib", "67.44", "kv_cache_tokens", "2,209,792",
                 "max_concurrency", "269.75", "tensor_parallel_size", "gpu_memory_utilization", "0.95", "8,192",
                 "settings the log shows", "bfloat16"):
        assert word in out, word
    assert "predicted" not in out.split("note: ")[0]  # no empty prediction column
    assert out.rstrip().splitlines()[-1].startswith("note: no prediction: ")
    assert "--model DIR" in out.rstrip().splitlines()[-1]


def test_check_log_without_config_then_with_model(tmp_path: Path) -> None:
    """--model DIR adds the prediction to the same log."""
    log = _renamed_example(tmp_path, "v1-0.19-h100-tp4-llama-3.1-8b.log", "/models/llama-3.1-8b-finetune")
    rc, out, err = run("check-log", str(log), "--json")
    assert rc == 0, err
    assert json.loads(out)["predicted"]["kv_cache_gib"] is None
    model_dir = tmp_path / "llama"
    model_dir.mkdir()
    (model_dir / "config.json").write_bytes((CATALOG / "meta-llama/Llama-3.1-8B-Instruct/config.json").read_bytes())
    rc, out, err = run("check-log", str(log), "--model", str(model_dir), "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["note"] is None and isinstance(data["predicted"]["kv_cache_gib"], float)


def test_check_log_unnamed_model_without_config(tmp_path: Path) -> None:
    """The V0 example names no model: without --model it still reports (it needed --model before)."""
    rc, out, err = run("check-log", str(LOGS / "v0-rtx3090-llama-3.1-8b.log"), "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["reported"] == EXAMPLES["v0-rtx3090-llama-3.1-8b.log"][1]
    assert data["note"].startswith("no prediction: the log does not name the model")


def test_check_log_explicit_model_that_cannot_load_is_an_error(tmp_path: Path) -> None:
    rc, _out, err = run("check-log", str(LOGS / "v1-0.19-h100-tp4-llama-3.1-8b.log"), "--model",
                        str(tmp_path / "missing"))
    assert rc == 2  # the user named it: their input is wrong, not the log
    assert one_error_line(err) == f"error: --model {str(tmp_path / 'missing')!r}: no such model directory: " \
                                  f"{tmp_path / 'missing'}"


def test_check_log_alias_is_planned_on_its_target(tmp_path: Path) -> None:
    """A log serving an alias id (no config of its own) is re-planned on the bundled target, and says so."""
    log = _renamed_example(tmp_path, "v1-0.19-h100-tp4-llama-3.1-8b.log", "mistralai/Mixtral-8x7B-Instruct-v0.1")
    rc, out, err = run("check-log", str(log), "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["note"] is None and data["predicted"]["weights_gib"] > 20
    assert any(w.startswith("mistralai/Mixtral-8x7B-Instruct-v0.1 is planned with the bundled "
                            "mistralai/Mixtral-8x7B-v0.1 config (same geometry: ") for w in data["warnings"])


def test_check_log_needs_memory_when_log_is_silent(tmp_path: Path) -> None:
    log = tmp_path / "v.log"
    log.write_text("INFO non-default args: {'model': 'meta-llama/Llama-3.1-8B-Instruct', 'max_model_len': 4096}\n")
    rc, _out, err = run("check-log", str(log))
    assert rc == 2 and "--vram-gib" in one_error_line(err)
    rc, out, err = run("check-log", str(log), "--gpu", "H100", "--json")
    assert rc == 0, err
    assert json.loads(out)["predicted"]["max_model_len"] == 4096


# ------------------------------------------------------------------------------------------- serving features

FEATURE_LOGS = ROOT / "tests" / "data" / "logs"  # verbatim excerpts of public vLLM logs; each names its source URL
# file -> the serving settings the log states, read off its lines by hand (None = the log is silent)
FEATURE_EXPECTED: dict[str, dict[str, object]] = {
    # non-default args: 'speculative_config': {'model': 'meta-llama/Llama-3.2-1B', 'num_speculative_tokens': 5}
    "vllm-19775_v0.9.2dev_speculative-config_nondefault-args.log": {
        "vllm_version": "0.9.2.dev121+g4c8f64faa", "model": "meta-llama/Llama-3.3-70B-Instruct",
        "tensor_parallel_size": 4, "max_model_len": 4096,
        "speculative_config": {"model": "meta-llama/Llama-3.2-1B", "num_speculative_tokens": 5}},
    # non-default args: 'quantization': 'bitsandbytes', 'enable_lora': True (no rank: vLLM's default 16 applies)
    "vllm-19693_v0.9.1_enable-lora_nondefault-args.log": {
        "vllm_version": "0.9.1", "model": "models/Llama-3.1-8B", "max_model_len": 9000,
        "quantization": "bitsandbytes", "enable_lora": True, "max_lora_rank": None, "speculative_config": None},
    # non-default args: 'enforce_eager': True, 'served_model_name': ['granite-4-micro'], 'enable_lora': True
    "vllm-pr27733_v0.11.0rc2_granite_enable-lora_nondefault-args.log": {
        "vllm_version": "0.11.0rc2.dev330+ge3938e2e9.d20251009", "model": "/home/jovyan/granite-4-micro",
        "enforce_eager": True, "enable_lora": True, "max_model_len": 131072},
    # the pasted command: --cpu-offload-gb 2 ... --max-model-len 2048 --enable-lora; `--max-lora-rank 64` sits on a
    # line the paste wrapped without a `\`, so it is not part of the command
    "vllm-6496_v0.6.3_cpu-offload-gb_enable-lora_command.log": {
        "vllm_version": "0.6.3.post1", "model": "unsloth/Llama-3.2-3B", "max_model_len": 2048, "cpu_offload_gb": 2.0,
        "enable_lora": True, "max_lora_rank": None},
    # engine config: speculative_config=SpeculativeConfig(method='eagle3', model='/tmp/...', num_spec_tokens=3);
    # enable_prefix_caching=True is on the wrapped second half of the line, which is no config line
    "speculators-pr166_v0.10.1dev_eagle3_engine-config.log": {
        "vllm_version": "0.10.1.dev2081+gc44ef9fc0.d20250930", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "tensor_parallel_size": 1, "max_model_len": 1024, "dtype": "bfloat16", "enable_prefix_caching": None,
        "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3, "model": "/tmp/pytest-of-rahul-tuli/"
                               "pytest-15/test_convert_run_vllm_engine_e2/random-weights-llama3.1.8b-2layer-eagle3-"
                               "unconverted"}},
}


def test_feature_logs_are_all_tested_and_sourced() -> None:
    assert sorted(p.name for p in FEATURE_LOGS.glob("*.log")) == sorted(FEATURE_EXPECTED)
    for name in FEATURE_EXPECTED:
        assert (FEATURE_LOGS / name).read_text().startswith("# source: https://github.com/")


@pytest.mark.parametrize("name", sorted(FEATURE_EXPECTED))
def test_feature_log_settings(name: str) -> None:
    r = parse_vllm_log((FEATURE_LOGS / name).read_text(), name)
    want = FEATURE_EXPECTED[name]
    assert {k: getattr(r, k) for k in want} == want
    silent = set(checklog.FEATURE_KEYS) - set(want)
    assert {k: getattr(r, k) for k in silent} == dict.fromkeys(silent)


def test_feature_settings_fill_a_valid_pinned() -> None:
    """What check-log reads goes into planner.schemas.Pinned under the same names, and validates there."""
    from planner.schemas import Pinned

    for name in FEATURE_EXPECTED:
        r = parse_vllm_log((FEATURE_LOGS / name).read_text(), name)
        pinned = Pinned(**{k: getattr(r, k) for k in checklog.FEATURE_KEYS})
        assert {k: getattr(pinned, k) for k in checklog.FEATURE_KEYS} == \
            {k: getattr(r, k) for k in checklog.FEATURE_KEYS}


def test_fully_flagged_command_line() -> None:
    # https://github.com/vllm-project/vllm/issues/20944 (issue description, verbatim)
    cmd = ("vllm serve meta-llama/Llama-3.1-70B -tp 8 --chat-template ./template.jinja --fully-sharded-loras "
           "--no-enable-prefix-caching --enable-lora --max-lora-rank 8 --lora-modules "
           "meta-llama/Llama-3.1-70B-lora-8-0=/tmp/adapters/meta-llama/Llama-3.1-70B/lora-8-0")
    got = checklog._command_settings(cmd.split())
    assert got == {"model": "meta-llama/Llama-3.1-70B", "tensor_parallel_size": "8", "enable_prefix_caching": False,
                   "enable_lora": True, "max_lora_rank": "8"}
    # https://github.com/vllm-project/vllm/issues/22645 (issue description, the --speculative-config JSON verbatim)
    spec = ('{"method": "eagle", "model": "/workspace/models/qwen2.5-vl-7b-eagle-sgl", "prefill_token_shift": false, '
            '"num_speculative_tokens": 5, "max_model_len": 2048}')
    text = (f"vllm serve /workspace/models/Qwen2.5-VL-7B-Instruct --no-enable-prefix-caching "
            f"--speculative-config '{spec}' --max_num-batched_tokens=2048 "
            "--limit-mm-per-prompt '{\"image\": 2, \"video\": 0}' --max-loras 4\n"
            "INFO 08-11 10:00:00 [api_server.py:1] vLLM API server version 0.10.0\n")
    r = parse_vllm_log(text, "x.log")
    assert r.speculative_config == {"method": "eagle", "model": "/workspace/models/qwen2.5-vl-7b-eagle-sgl",
                                    "prefill_token_shift": False, "num_speculative_tokens": 5, "max_model_len": 2048}
    assert (r.max_num_batched_tokens, r.enable_prefix_caching, r.max_loras) == (2048, False, 4)
    assert r.limit_mm_per_prompt == {"image": 2, "video": 0}


def test_legacy_speculative_flags_and_repr_map_to_the_json_vllm_takes() -> None:
    # vLLM < 0.8: --speculative-model '[ngram]' / a draft, --num-speculative-tokens K (vllm#11126 runs
    # `--speculative-model .../EAGLE-llama2-chat-7B/ --num_speculative_tokens 3`)
    words = ["vllm", "serve", "m", "--speculative-model", "/mnt/EAGLE-llama2-chat-7B/", "--num_speculative_tokens", "3"]
    assert checklog._command_settings(words)["speculative_config"] == \
        {"model": "/mnt/EAGLE-llama2-chat-7B/", "num_speculative_tokens": 3}
    assert checklog._spec_from_legacy("[ngram]", "5") == {"method": "ngram", "num_speculative_tokens": 5}
    # V0 SpeculativeConfig.__repr__: f"SpeculativeConfig({draft_model=}, {num_spec_tokens=})"
    assert checklog._spec_from_repr("draft_model='[ngram]', num_spec_tokens=4") == \
        {"method": "ngram", "num_speculative_tokens": 4}
    assert checklog._spec_from_repr("method='ngram', model=None, num_spec_tokens=4") == \
        {"method": "ngram", "num_speculative_tokens": 4}
    assert checklog._spec_from_repr("draft_model=None, num_spec_tokens=None") is None


@pytest.mark.parametrize(("key", "raw", "want"), [
    ("limit_mm_per_prompt", "image=16,video=2", {"image": 16, "video": 2}),  # the 0.6.x key=value form
    ("limit_mm_per_prompt", {"image": {"count": 2, "width": 512}}, {"image": {"count": 2, "width": 512}}),
    ("limit_mm_per_prompt", {"image": -1}, None),
    ("limit_mm_per_prompt", "image=lots", None),
    ("limit_mm_per_prompt", "{" + '"a": 1,' * 3000 + "}", None),  # longer than a value is read
    ("speculative_config", '{"method": "ngram", "num_speculative_tokens": 0}', None),
    ("speculative_config", '{"num_speculative_tokens": 3}', None),  # neither method nor model
    ("speculative_config", "[1, 2]", None),
    ("speculative_config", '{"method": "mtp", "nested": {"a": 1}}', {"method": "mtp"}),
    ("max_lora_rank", True, None), ("max_lora_rank", "0", None), ("max_loras", 3, 3),
    ("lora_dtype", "torch.bfloat16", "bfloat16"), ("lora_dtype", "float32", None),
    ("cpu_offload_gb", "nan", None), ("cpu_offload_gb", "-1", None), ("cpu_offload_gb", 4, 4.0),
])
def test_feature_values_are_validated(key: str, raw: object, want: object) -> None:
    assert checklog._setting(key, raw) == want


def test_dict_values_survive_an_args_line_literal_eval_cannot_read() -> None:
    # `'dtype': torch.bfloat16` makes the whole dict unreadable to ast.literal_eval; the dict values are still read
    line = ("INFO [utils.py:328] non-default args: {'dtype': torch.bfloat16, 'limit_mm_per_prompt': {'image': 1, "
            "'video': 0}, 'enable_lora': True, 'max_lora_rank': 64, 'speculative_config': {'method': 'ngram', "
            "'num_speculative_tokens': 3, 'prompt_lookup_max': 4}}")
    r = parse_vllm_log(line, "x.log")
    assert (r.dtype, r.enable_lora, r.max_lora_rank) == ("bfloat16", True, 64)
    assert r.limit_mm_per_prompt == {"image": 1, "video": 0}
    assert r.speculative_config == {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4}


def test_long_speculative_repr_is_bounded() -> None:
    line = ("INFO Initializing a V1 LLM engine (v0.11.0) with config: model='m', speculative_config=SpeculativeConfig("
            + "x" * 200_000 + ", tokenizer='m'")
    r = parse_vllm_log(line, "x.log")
    assert r.speculative_config is None and r.model == "m"


def test_an_unplannable_feature_is_dropped_with_a_warning() -> None:
    """A draft the planner cannot load offline drops speculative decoding only; any other refusal drops every
    serving feature; a failure without them is the check's error."""
    spec = {"method": "eagle3", "model": "/nope", "num_speculative_tokens": 3}
    features = {"enable_lora": True, "speculative_config": spec}
    tried: list[dict] = []

    def run(req: dict) -> str:
        tried.append(req)
        if "speculative_config" in req:
            raise InputError("--speculative-config: model '/nope' is neither a local directory nor a bundled "
                             "catalog id")
        return "plan"

    resp, notes = checklog._plan_with_features(dict, features, run, Path("x.log"))
    assert resp == "plan" and tried == [features, {"enable_lora": True}]
    assert notes == ["the log's speculative_config="
                     "{\"method\":\"eagle3\",\"model\":\"/nope\",\"num_speculative_tokens\":3} cannot be planned here "
                     "(--speculative-config: model '/nope' is neither a local directory nor a "
                     "bundled catalog id); planned without it"]

    def refuse(req: dict) -> str:
        raise InputError("nope")

    with pytest.raises(InputError, match=r"^re-planning x\.log: nope$"):
        checklog._plan_with_features(dict, features, refuse, Path("x.log"))


def test_check_log_plans_a_log_whose_draft_is_not_offline() -> None:
    path = FEATURE_LOGS / "speculators-pr166_v0.10.1dev_eagle3_engine-config.log"
    rc, out, err = run("check-log", str(path), "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["settings"]["speculative_config"] == FEATURE_EXPECTED[path.name]["speculative_config"]
    assert data["predicted"]["max_model_len"] == 1024
