"""Process safety (issue 8 item 4): no network unless a hub id is asked for, no shell, no temporary files
left behind, a contained engine. The nvidia-smi timeout/kill and the engine-worker kill are tested
beside their code (tests/unit/hardware/test_probe.py, tests/unit/policy/test_containment.py); the hub's
offline error in tests/cli/test_cli.py::test_hub_id_offline_fails_fast_and_cleanly.
"""

from __future__ import annotations

import ast
import json
import socket
import tempfile
from pathlib import Path

import pytest

from tests.clirun import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to resolve a name or open a connection is recorded and refused."""
    attempts: list[str] = []

    def refuse(*args: object, **_: object) -> None:
        attempts.append(repr(args[:2]))
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_catalog_and_local_models_never_touch_the_network(no_network: list[str], tmp_path: Path) -> None:
    local = tmp_path / "model"
    local.mkdir()
    (local / "config.json").write_text(
        (ROOT / "planner/models/catalog/Qwen/Qwen3-8B/config.json").read_text())
    for argv in (["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--json"],
                 ["plan", "--model", str(local), "--gpu", "L4", "--json"],
                 ["generate", "--model", "Qwen/Qwen3-8B", "--gpu", "H100", "-o", str(tmp_path / "out")],
                 ["rules", "test"]):
        rc, _, err = run(*argv)
        assert rc == 0, err
    assert no_network == []


def test_hub_ids_are_the_only_path_to_the_network(no_network: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    rc, _, err = run("plan", "--model", "acme/not-in-catalog", "--gpu", "H100")
    assert rc == 2 and "acme/not-in-catalog" in err and "Traceback" not in err
    assert no_network, "a hub id does try the hub"


def test_no_temporary_files_are_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.chdir(tmp_path)
    for argv in (["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "H100", "--json"],
                 ["generate", "--model", "Qwen/Qwen3-8B", "--gpu", "H100", "-o", "deploy"],
                 ["generate", "--model", "Qwen/Qwen3-8B", "--gpu", "H100", "-o", "deploy", "--force"],
                 ["generate", "--model", "meta-llama/Llama-3.1-405B", "--gpu", "L4", "-o", "nope"],
                 ["check-log", str(ROOT / "examples" / "logs" / sorted(p.name for p in (
                     ROOT / "examples" / "logs").glob("*.log"))[0])],
                 ["rules", "test"]):
        run(*argv)
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy", "tmp"]
    assert json.loads((tmp_path / "deploy" / ".vllm-planner.json").read_text())["generator"] == "vllm-planner"


def test_only_the_probe_runs_subprocesses_and_never_through_a_shell() -> None:
    """Static check over the package: subprocess is imported by the probe alone (and the engine worker
    uses multiprocessing, not a shell); no call anywhere passes shell=True or uses os.system/popen."""
    offenders: list[str] = []
    for path in (ROOT / "planner").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if "subprocess" in names and path.name != "probe.py":
                    offenders.append(f"{path.name}: imports subprocess")
            if isinstance(node, ast.keyword) and node.arg == "shell":
                offenders.append(f"{path.name}:{node.lineno}: shell=")
            if isinstance(node, ast.Attribute) and node.attr in ("system", "popen") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                offenders.append(f"{path.name}:{node.lineno}: os.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                offenders.append(f"{path.name}:{node.lineno}: {node.func.id}()")
    assert offenders == []
