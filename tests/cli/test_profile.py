"""profile.yaml: written by generate, edited by hand, replayed by `plan --profile` (flags win)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clirun import one_error_line, run

QWEN = ["--model", "Qwen/Qwen3-8B", "--gpu", "H100"]




def make_profile(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "deploy"
    rc, _, err = run("generate", *QWEN, *extra, "-o", str(out))
    assert rc == 0, err
    return out / "profile.yaml"


def replay(*args: str, code: int = 0) -> dict:
    rc, out, err = run("plan", *args, "--json")
    assert rc == code, err
    return json.loads(out)


def test_profile_is_commented_and_records_the_resolved_version(tmp_path: Path) -> None:
    text = make_profile(tmp_path, "--concurrency", "16").read_text()
    assert 'vllm_version: "0.33.0"' in text  # resolved, so a newer planner replays the same target
    assert "concurrency: 16 # Concurrent requests to serve." in text
    assert "max_model_len: # --max-model-len; null = let the planner decide" in text


def test_hand_edit_is_honoured_and_comments_do_not_matter(tmp_path: Path) -> None:
    prof = make_profile(tmp_path)
    text = prof.read_text().replace("  max_model_len: #", "  max_model_len: 8192 # edited by hand;")
    prof.write_text(text + "# a trailing comment\n")
    p = replay("--profile", str(prof))
    assert p["config"]["max_model_len"] == 8192
    assert "--max-model-len 8192" in p["serve_command"]


def test_flags_on_the_command_line_win(tmp_path: Path) -> None:
    prof = make_profile(tmp_path, "--max-model-len", "8192", "--concurrency", "4")
    p = replay("--profile", str(prof), "--max-model-len", "4096")
    assert p["config"]["max_model_len"] == 4096
    assert p["performance"]["workload"]["concurrency"] == 4  # still from the profile
    p = replay("--profile", str(prof), "--concurrency", "1")
    assert p["performance"]["workload"]["concurrency"] == 1 and p["config"]["max_model_len"] == 8192


def test_relative_paths_in_a_profile_are_relative_to_it(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "packs"
    site.mkdir()
    (site / "site.yaml").write_text("schema: 1\nname: site\nversion: 1.0.0\nlayer: site\n"
                                    "params:\n  default_gpu_memory_utilization: 0.8\n")
    prof = make_profile(tmp_path)
    text = prof.read_text().replace("rules: []", 'rules: ["../packs/site.yaml"]')
    prof.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    p = replay("--profile", str(prof))
    assert p["config"]["gpu_memory_utilization"] == 0.8
    assert any(pk["name"] == "site" for pk in p["audit"]["packs"])


def test_broken_profiles_are_one_line_errors(tmp_path: Path) -> None:
    prof = make_profile(tmp_path)
    good = prof.read_text()
    cases = {
        "bad: [yaml": "invalid YAML",
        "- a list\n": "a profile is a YAML mapping",
        good + "colour: blue\n": "unknown profile field 'colour'",
        good.replace("  dtype: #", "  dtype_x: 1 #"): "unknown pinned setting 'dtype_x'",
        good.replace("concurrency: 1 #", "concurrency: -3 #"): "concurrency: Input should be greater than",
        good.replace('schema: "vllm-planner/profile/1"', 'schema: "other/9"'): "is not 'vllm-planner/profile/1'",
    }
    for text, message in cases.items():
        prof.write_text(text)
        rc, _, err = run("plan", "--profile", str(prof), "--json")
        line = one_error_line(err)
        assert rc == 2 and message in line and str(prof) in line, (message, line)
    rc, _, err = run("plan", "--profile", str(tmp_path / "missing.yaml"))
    assert rc == 2 and "no such file" in one_error_line(err)


def test_model_is_required_without_a_profile() -> None:
    rc, _, err = run("plan", "--gpu", "H100")
    assert rc == 2 and "--model is required" in one_error_line(err)


def test_a_single_path_is_a_list_of_one_and_other_shapes_are_refused(tmp_path: Path) -> None:
    prof = make_profile(tmp_path)
    pack = tmp_path / "site.yaml"
    pack.write_text("schema: 1\nname: site\nversion: 1.0.0\nlayer: site\n"
                    "params:\n  default_gpu_memory_utilization: 0.8\n")
    good = prof.read_text()
    prof.write_text(good.replace("rules: []", 'rules: "../site.yaml"'))
    assert replay("--profile", str(prof))["config"]["gpu_memory_utilization"] == 0.8
    prof.write_text(good.replace("rules: []", "rules: {a: 1}"))
    rc, _, err = run("plan", "--profile", str(prof))
    assert rc == 2 and "rules must be a list of file paths" in one_error_line(err)


def test_gpus_named_on_the_command_line_replace_the_profiles(tmp_path: Path) -> None:
    prof = make_profile(tmp_path)  # Qwen3-8B on an H100
    smi = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi" / "1xL40S_smi_550.txt"
    p = replay("--profile", str(prof), "--from-file", str(smi))
    assert p["hardware"]["gpu"] == "NVIDIA L40S" and p["hardware"]["probed"] is True
    p = replay("--profile", str(prof), "--vram-gib", "24")
    assert p["hardware"]["memory_bytes_per_gpu"] == 24 * 2**30


def test_local_model_directories_replay_to_the_same_plan(tmp_path: Path, monkeypatch) -> None:
    src = Path(__file__).resolve().parents[2] / "planner/models/catalog/Qwen/Qwen3-8B/config.json"
    model = tmp_path / "my model"
    model.mkdir()
    (model / "config.json").write_text(src.read_text())
    monkeypatch.chdir(tmp_path)
    rc, _, err = run("generate", "--model", "./my model", "--gpu", "H100", "-o", "deploy")
    assert rc == 0, err
    plan = json.loads((tmp_path / "deploy" / "plan.json").read_text())
    assert plan["model"]["name"] == str(model)  # absolute, so the artifacts run from anywhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = replay("--profile", str(tmp_path / "deploy" / "profile.yaml"))
    assert again["plan_id"] == plan["plan_id"] and again["serve_command"] == plan["serve_command"]
