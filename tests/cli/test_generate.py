"""`vllm-planner generate`: every artifact valid for its target, for the issue's Done-means matrix.

Independent checks: serve commands are parsed against vLLM's own argparse dumps (tests/data/vllm-flags),
compose files against the Compose Specification schema (and `docker-compose config` when installed),
Kubernetes objects with kubernetes-validate and the LeaderWorkerSet CRD schema, profiles by replaying them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML reads YAML 1.1, as docker-compose and Kubernetes do

from tests.clirun import one_error_line, run
from tests.vllm_parser import assert_vllm_accepts

DATA = Path(__file__).resolve().parents[1] / "data"

SCENARIOS = {
    "llama70b-8xh100": ["--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "H100", "--gpus", "8"],
    "r1-2x8xh100": ["--model", "deepseek-ai/DeepSeek-R1", "--gpu", "H100", "--nodes", "2", "--gpus-per-node", "8"],
    "qwen8b-rtx4090": ["--model", "Qwen/Qwen3-8B", "--gpu", "RTX 4090"],
}
VERSIONS = ("0.33.0", "0.11.0")




def serve_commands(out: Path) -> list[list[str]]:
    """Every `vllm serve` invocation in the generated files."""
    cmds: list[list[str]] = []

    def from_shell(text: str) -> None:
        for m in re.finditer(r"vllm serve [^\n&;]*", text):
            words = shlex.split(m.group(0))
            cmds.append([w for w in words if w != '"$@"' and w != "$@"])

    from_shell((out / "serve_command.sh").read_text())
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())
    for svc in compose["services"].values():
        if svc.get("entrypoint") == ["vllm", "serve"]:
            cmds.append(["vllm", "serve", *svc["command"]])
        else:
            from_shell(" ".join(svc["command"]).replace("$$", "$"))
    for f in sorted((out / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            for c in _containers(doc):
                if c.get("command") == ["vllm", "serve"]:
                    cmds.append(["vllm", "serve", *c["args"]])
                else:
                    from_shell(" ".join(c.get("args", [])))
    from_shell(json.loads((out / "plan.json").read_text())["serve_command"])
    return cmds


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Deployment":
        return spec["template"]["spec"]["containers"]
    if doc["kind"] == "LeaderWorkerSet":
        t = spec["leaderWorkerTemplate"]
        return t["leaderTemplate"]["spec"]["containers"] + t["workerTemplate"]["spec"]["containers"]
    return []


# --- compose and Kubernetes validators ------------------------------------------------------------------

def assert_valid_compose(path: Path) -> None:
    import jsonschema

    schema = json.loads((DATA / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load(path.read_text()))
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("VLLM_PLANNER_REQUIRE_COMPOSE"):
            pytest.fail("docker-compose is required here (VLLM_PLANNER_REQUIRE_COMPOSE) but not installed")
        return
    for profile in ([], ["--profile", "head"], ["--profile", "worker"]):
        r = subprocess.run([tool, "-f", str(path), *profile, "config", "-q"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "HF_TOKEN": "x"})
        assert r.returncode == 0, r.stderr


def assert_valid_kubernetes(path: Path) -> None:
    import jsonschema
    import kubernetes_validate

    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] == "LeaderWorkerSet":
            lws = json.loads((DATA / "schemas" / "lws-v1.json").read_text())["schema"]
            jsonschema.validate(doc, lws)
            t = doc["spec"]["leaderWorkerTemplate"]
            for key in ("leaderTemplate", "workerTemplate"):
                kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": key},
                                              "template": t[key]}, "1.30.0", strict=True)
        else:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)


# --- the matrix ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    out: dict[tuple[str, str], Path] = {}
    for name, args in SCENARIOS.items():
        for version in VERSIONS:
            d = tmp_path_factory.mktemp("gen") / f"{name}-{version}"
            rc, _, err = run("generate", *args, "--vllm-version", version, "-o", str(d))
            assert rc == 0, err
            out[(name, version)] = d
    return out


CASES = [(n, v) for n in SCENARIOS for v in VERSIONS]


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_serve_commands_parse_with_vllms_own_flag_inventory(generated: dict, case: tuple[str, str]) -> None:
    cmds = serve_commands(generated[case])
    assert len(cmds) >= 4  # script, compose, kubernetes, plan.json
    for argv in cmds:
        assert_vllm_accepts(argv, case[1])
    assert len({tuple(c) for c in cmds}) == 1, "every artifact runs the same command"


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_compose_is_valid(generated: dict, case: tuple[str, str]) -> None:
    assert_valid_compose(generated[case] / "docker-compose.yaml")


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_kubernetes_manifests_are_valid_objects(generated: dict, case: tuple[str, str]) -> None:
    files = sorted((generated[case] / "kubernetes").glob("*.yaml"))
    assert len(files) == 3
    for f in files:
        assert_valid_kubernetes(f)


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_profile_replays_to_the_same_configuration(generated: dict, case: tuple[str, str]) -> None:
    d = generated[case]
    plan = json.loads((d / "plan.json").read_text())
    rc, out, err = run("plan", "--profile", str(d / "profile.yaml"), "--json")
    assert rc == 0, err
    replay = json.loads(out)
    assert replay["config"] == plan["config"]
    assert replay["plan_id"] == plan["plan_id"]
    assert replay["serve_command"] == plan["serve_command"]


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_every_file_carries_the_plan_id_and_versions(generated: dict, case: tuple[str, str]) -> None:
    d = generated[case]
    plan = json.loads((d / "plan.json").read_text())
    stamp = f"plan {plan['plan_id']}, vLLM {case[1]}"
    files = [p for p in d.rglob("*") if p.is_file()]
    assert len(files) == 10
    for f in files:
        text = f.read_text()
        if f.name in ("plan.json", ".vllm-planner.json"):
            assert plan["plan_id"] in text
        else:
            assert stamp in text and "core@" in text, f
    assert f"vllm/vllm-openai:v{case[1]}" in (d / "docker-compose.yaml").read_text()


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_scripts_are_valid_bash_and_executable(generated: dict, case: tuple[str, str]) -> None:
    for name in ("serve_command.sh", "benchmark.sh"):
        f = generated[case] / name
        assert os.access(f, os.X_OK)
        r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    bench = (generated[case] / "benchmark.sh").read_text()
    for block in re.findall(r"<<'PY'\n(.*?)\nPY", bench, re.S):
        compile(block, "benchmark.sh", "exec")
    plan = json.loads((generated[case] / "plan.json").read_text())
    w = plan["performance"]["workload"]
    assert f"--random-input-len {w['input_len']} --random-output-len {w['output_len']}" in bench
    assert f"--max-concurrency {w['concurrency']}" in bench


def test_multi_node_deepseek_is_a_leader_worker_set_with_ray(generated: dict) -> None:
    d = generated[("r1-2x8xh100", "0.33.0")]
    lws = yaml.safe_load((d / "kubernetes" / "leaderworkerset.yaml").read_text())
    t = lws["spec"]["leaderWorkerTemplate"]
    assert t["size"] == 2
    leader = t["leaderTemplate"]["spec"]["containers"][0]
    worker = t["workerTemplate"]["spec"]["containers"][0]
    # the leader starts a Ray head, waits until both nodes are alive, then serves; workers join the leader
    assert leader["args"][0].startswith("ray start --head --port=6379 && until python3 -c")
    assert ">= 2 else 1)" in leader["args"][0] and "&& exec vllm serve deepseek-ai/DeepSeek-R1" in leader["args"][0]
    assert worker["args"][0] == "until ray start --block --address=$(LWS_LEADER_ADDRESS):6379; do sleep 5; done"
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == 8
    svc = yaml.safe_load((d / "kubernetes" / "service.yaml").read_text())
    assert svc["spec"]["selector"]["role"] == "leader"
    plan = json.loads((d / "plan.json").read_text())
    # vLLM's multi-node guidance: TP over the 8 GPUs of a node, one pipeline stage per node, one Ray launch
    assert (plan["config"]["tensor_parallel_size"], plan["config"]["pipeline_parallel_size"]) == (8, 2)
    assert plan["serve_command"] == ("vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 8 "
                                     "--pipeline-parallel-size 2 --distributed-executor-backend ray "
                                     "--max-model-len 163840")


def test_single_node_artifacts_reserve_the_planned_gpus(generated: dict) -> None:
    d = generated[("llama70b-8xh100", "0.33.0")]
    plan = json.loads((d / "plan.json").read_text())
    c = plan["config"]
    gpus = c["tensor_parallel_size"] * c["pipeline_parallel_size"] * c["data_parallel_size"]
    compose = yaml.safe_load((d / "docker-compose.yaml").read_text())
    dev = compose["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["count"] == gpus and dev["capabilities"] == ["gpu"]
    assert compose["services"]["vllm"]["ipc"] == "host"
    dep = yaml.safe_load((d / "kubernetes" / "deployment.yaml").read_text())
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}  # GFD label of the smi name
    # the model cache holds the checkpoint: 70.6e9 params x 2 bytes = 141 GB = 131.5 GiB, x 1.3 -> 171 -> 180 GiB
    pvc = yaml.safe_load((d / "kubernetes" / "pvc.yaml").read_text())
    assert pvc["spec"]["resources"]["requests"]["storage"] == "180Gi"


def test_settings_equal_to_the_version_default_are_left_out() -> None:
    # util 0.9 is the default in 0.11 but not in 0.33 (0.92): only the 0.33 command carries it
    base = ["--model", "Qwen/Qwen3-8B", "--gpu", "H100", "--gpu-memory-utilization", "0.9", "--json"]
    _, out11, _ = run("plan", *base, "--vllm-version", "0.11.0")
    _, out33, _ = run("plan", *base, "--vllm-version", "0.33.0")
    assert "--gpu-memory-utilization" not in json.loads(out11)["serve_command"]
    assert "--gpu-memory-utilization 0.9" in json.loads(out33)["serve_command"]


def test_the_sort_sampler_costs_kv_cache() -> None:
    """Pinning the sort sampler raises the startup sampler peak (38 vs 14.2 B per logit), so less KV cache; the
    serve command is the same (the sampler is how the install runs, not a flag)."""
    _, fused, _ = run("plan", *QWEN, "--json")
    _, native, _ = run("plan", *QWEN, "--sampler", "sort", "--json")
    f, n = json.loads(fused), json.loads(native)
    assert n["memory"]["per_gpu"]["activation_peak_bytes"] > f["memory"]["per_gpu"]["activation_peak_bytes"]
    assert n["memory"]["per_gpu"]["kv_cache_bytes"] < f["memory"]["per_gpu"]["kv_cache_bytes"]
    assert n["plan_id"] != f["plan_id"]
    assert (f["memory"]["sampler"], n["memory"]["sampler"]) == ("fused", "sort")
    assert f["serve_command"] == n["serve_command"]
    _, v0, _ = run("plan", *QWEN, "--vllm-version", "0.6.4", "--json")  # V0 sorts unless told otherwise
    assert json.loads(v0)["memory"]["sampler"] == "sort"


# --- safe writes -----------------------------------------------------------------------------------------

QWEN = ["--model", "Qwen/Qwen3-8B", "--gpu", "H100"]


def _tree(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def test_existing_directory_needs_force_and_only_ours_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    assert run("generate", *QWEN, "-o", str(out))[0] == 0
    before = _tree(out)
    rc, _, err = run("generate", *QWEN, "--max-model-len", "4096", "-o", str(out))
    assert rc == 2 and "pass --force" in one_error_line(err)
    assert _tree(out) == before
    rc, _, err = run("generate", *QWEN, "--max-model-len", "4096", "-o", str(out), "--force")
    assert rc == 0, err
    assert "--max-model-len 4096" in (out / "serve_command.sh").read_text()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    rc, _, err = run("generate", *QWEN, "-o", str(foreign), "--force")
    assert rc == 2 and "not written by vllm-planner" in one_error_line(err)
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy", "home"]  # no temporary leftovers


def test_output_path_that_is_a_file_or_under_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run("generate", *QWEN, "-o", str(f))
    assert rc == 2 and "not a directory" in one_error_line(err)
    rc, _, err = run("generate", *QWEN, "-o", str(f / "deploy"))
    assert rc == 2 and "cannot write" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and f.read_text() == "x"


def test_infeasible_plan_writes_nothing_and_exits_3(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    rc, _, err = run("generate", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "RTX 4090", "-o", str(out))
    assert rc == 3 and "nothing written" in one_error_line(err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_parents_are_created_and_removed_again_on_failure(tmp_path: Path) -> None:
    from planner.errors import InputError
    from planner.files import write_tree

    out = tmp_path / "a" / "b" / "deploy"
    write_tree(out, {"x.txt": "1", "k/y.sh": "2"}, force=False, marker="m")
    assert (out / "x.txt").read_text() == "1" and os.access(out / "k" / "y.sh", os.X_OK)
    bad = tmp_path / "c" / "d" / "deploy"
    with pytest.raises(InputError, match="cannot write"):
        write_tree(bad, {"x": "1", "x/y": "2"}, force=False, marker="m")  # x is a file, then a directory
    assert not (tmp_path / "c").exists()


def test_a_shape_vllm_cannot_run_is_never_chosen(tmp_path: Path) -> None:
    # DeepSeek-R1 pinned to TP 8 x PP 2 on 4 nodes: two data-parallel replicas would each span 2 nodes, which
    # vLLM cannot run for a MoE model (a DP rank lives on one node), so the plan runs one replica on 2 nodes
    rc, out, err = run("plan", "--model", "deepseek-ai/DeepSeek-R1", "--gpu", "H100", "--nodes", "4",
                       "--gpus-per-node", "8", "--tp", "8", "--pp", "2", "--json")
    assert rc == 0, err
    p = json.loads(out)
    assert p["config"]["data_parallel_size"] == 1
    assert (p["launch"]["nodes"], p["launch"]["groups"], p["launch"]["executor"]) == (2, 1, "ray")
    assert "uses 2 of the 4 nodes" in p["launch"]["notes"]
    # a pinned shape larger than the cluster is refused before anything is written
    rc, _, err = run("generate", "--model", "meta-llama/Llama-3.1-405B", "--gpu", "H100", "--nodes", "2",
                     "--gpus-per-node", "8", "--tp", "8", "--pp", "3", "-o", str(tmp_path / "d"))
    assert rc == 2 and "needs more than the 16 GPU(s)" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("version", "args"), [
    ("0.6.4", ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--gpus", "2"]),  # no DP in 0.6.4
    ("0.8.5", ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--nodes", "2",
               "--gpus-per-node", "8"]),  # no --data-parallel-size-local in 0.8.5
])
def test_layouts_the_version_cannot_launch_are_not_chosen(version: str, args: list[str]) -> None:
    rc, out, err = run("plan", *args, "--vllm-version", version, "--json")
    assert rc == 0, err
    p = json.loads(out)
    assert p["config"]["data_parallel_size"] == 1 and "--data-parallel" not in p["serve_command"]


def test_a_flag_the_target_version_lacks_is_refused(tmp_path: Path) -> None:
    rc, _, err = run("generate", *QWEN, "--vllm-version", "0.8.5", "--kv-cache-dtype", "fp8_inc",
                     "-o", str(tmp_path / "d"))
    assert rc == 2 and "vLLM 0.8.5 accepts only" in one_error_line(err)


EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "examples" / "deploy").iterdir() if p.is_dir())


@pytest.mark.parametrize("d", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_committed_examples_are_valid(d: Path) -> None:
    """The README's examples (examples/deploy/regenerate.sh) stay valid artifacts."""
    version = json.loads((d / "plan.json").read_text())["vllm_version"]
    for argv in serve_commands(d):
        assert_vllm_accepts(argv, version)
    assert_valid_compose(d / "docker-compose.yaml")
    for f in sorted((d / "kubernetes").glob("*.yaml")):
        assert_valid_kubernetes(f)


def test_local_model_is_mounted_into_containers_and_served_under_one_name(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "planner/models/catalog/Qwen/Qwen3-8B/config.json"
    model = tmp_path / "my$model"
    model.mkdir()
    (model / "config.json").write_text(src.read_text())
    out = tmp_path / "deploy"
    rc, _, err = run("generate", "--model", str(model), "--gpu", "H100", "-o", str(out))
    assert rc == 0, err
    script = (out / "serve_command.sh").read_text()
    assert f"vllm serve '{model}'" in script and "--served-model-name 'my$model'" in script
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())
    svc = compose["services"]["vllm"]
    assert svc["command"][0] == "/models/my$$model"  # compose reads `$$` as a literal `$`
    assert f"{str(model).replace('$', '$$')}:/models/my$$model:ro" in svc["volumes"]
    assert_valid_compose(out / "docker-compose.yaml")
    dep = yaml.safe_load((out / "kubernetes" / "deployment.yaml").read_text())
    pod = dep["spec"]["template"]["spec"]
    assert {"name": "model", "hostPath": {"path": str(model), "type": "Directory"}} in pod["volumes"]
    assert pod["containers"][0]["args"][0] == "/models/my$model"
    assert_valid_kubernetes(out / "kubernetes" / "deployment.yaml")
    bench = (out / "benchmark.sh").read_text()
    assert "--served-model-name 'my$model'" in bench


def test_force_never_deletes_files_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    assert run("generate", *QWEN, "-o", str(out))[0] == 0
    (out / "my-notes.md").write_text("keep me")
    rc, _, err = run("generate", *QWEN, "-o", str(out), "--force")
    assert rc == 2 and "holds files vllm-planner did not write (my-notes.md)" in one_error_line(err)
    assert (out / "my-notes.md").read_text() == "keep me"


def test_an_empty_existing_directory_is_filled_in_place(tmp_path: Path) -> None:
    out = tmp_path / "mnt"
    out.mkdir()
    inode = out.stat().st_ino  # a mount point cannot be renamed over: the directory itself must stay
    assert run("generate", *QWEN, "-o", str(out))[0] == 0
    assert out.stat().st_ino == inode and (out / "plan.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]


def test_a_site_port_reaches_every_artifact_and_the_plan(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("schema: 1\nname: site\nversion: 1.0.0\nlayer: site\nparams:\n  deploy_port: 9000\n")
    out = tmp_path / "deploy"
    rc, _, err = run("generate", *QWEN, "--rules", str(site), "-o", str(out))
    assert rc == 0, err
    plan = json.loads((out / "plan.json").read_text())
    assert plan["serve_command"].endswith("--port 9000")
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())
    assert compose["services"]["vllm"]["ports"] == ["9000:9000"]
    assert "http://localhost:9000" in (out / "benchmark.sh").read_text()
    for argv in serve_commands(out):
        assert_vllm_accepts(argv, "0.33.0")


def test_probed_gpus_are_pinned_in_pci_order(tmp_path: Path) -> None:
    smi = DATA / "nvidia-smi" / "1xRTX5090+1xRTX4090_smi_580_mixed.txt"
    out = tmp_path / "deploy"
    rc, _, err = run("generate", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--from-file", str(smi), "-o", str(out))
    assert rc == 0, err
    assert "exec env CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0 vllm serve" in \
        (out / "serve_command.sh").read_text()
    dev = yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]["vllm"]["deploy"]
    assert dev["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]


def test_image_tag_of_a_development_version_is_its_release() -> None:
    from planner.artifacts.common import image

    assert image("0.11.0rc1.dev5+g1234") == "vllm/vllm-openai:v0.11.0"
    assert image("0.33.0") == "vllm/vllm-openai:v0.33.0"


def test_a_pinned_sampler_replays_from_the_profile(tmp_path: Path) -> None:
    d = tmp_path / "out"
    rc, _, err = run("generate", *QWEN, "--sampler", "sort", "-o", str(d))
    assert rc == 0, err
    assert 'sampler: "sort"' in (d / "profile.yaml").read_text()
    _, out, _ = run("plan", "--profile", str(d / "profile.yaml"), "--json")
    replay = json.loads(out)
    assert replay["memory"]["sampler"] == "sort"
    assert replay["plan_id"] == json.loads((d / "plan.json").read_text())["plan_id"]
    _, out, _ = run("plan", "--profile", str(d / "profile.yaml"), "--sampler", "fused", "--json")
    assert json.loads(out)["memory"]["sampler"] == "fused"  # the command line wins over the profile
