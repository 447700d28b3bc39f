"""load_model: local directories, the bundled catalog, and the hub path against a local stand-in.

The hub tests run load_model in a subprocess with HF_ENDPOINT pointing at tests/unit/models/fake_hub.py
(huggingface_hub reads HF_ENDPOINT at import time), HF_HOME in a temporary directory and
HF_HUB_OFFLINE unset: the real huggingface_hub code path, no mocks, no network.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.errors import ModelConfigError
from planner.models.sources import CATALOG_DIR, catalog_entry, load_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fake_hub  # noqa: E402 - test helper beside this file

LLAMA_1B = (CATALOG_DIR / "meta-llama/Llama-3.2-1B-Instruct/config.json").read_bytes()


def _model_dir(tmp_path: Path, config: bytes | str = LLAMA_1B) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
    return directory


class TestLocal:
    def test_directory(self, tmp_path: Path) -> None:
        """A directory with config.json (+ safetensors index) loads as a local model."""
        directory = _model_dir(tmp_path)
        (directory / "model.safetensors.index.json").write_text('{"metadata": {"total_size": 2471645184}}')

        arch = load_model(str(directory))

        assert (arch.hidden_size, arch.num_layers, arch.tie_word_embeddings) == (2048, 16, True)
        assert f"local:{directory}" == arch.source
        assert arch.safetensors_total_bytes == 2471645184

    def test_hf_quant_config_companion(self, tmp_path: Path) -> None:
        """hf_quant_config.json beside config.json becomes a ModelOpt QuantInfo."""
        directory = _model_dir(tmp_path)
        (directory / "hf_quant_config.json").write_text('{"quantization": {"quant_algo": "FP8"}}')

        assert load_model(str(directory)).quant.method == "modelopt"

    def test_config_file_path(self, tmp_path: Path) -> None:
        """A path to the config.json itself is accepted."""
        directory = _model_dir(tmp_path)

        assert load_model(str(directory / "config.json")).hidden_size == 2048

    def test_missing_directory(self, tmp_path: Path) -> None:
        """A path that does not exist is an error, not a hub lookup."""
        with pytest.raises(ModelConfigError, match=r"^no such model directory: "):
            load_model(str(tmp_path / "nope"))

    def test_directory_without_config(self, tmp_path: Path) -> None:
        """A directory without config.json names the missing file."""
        with pytest.raises(ModelConfigError, match=r"config\.json: no such file"):
            load_model(str(tmp_path))

    def test_malformed_json(self, tmp_path: Path) -> None:
        """Broken JSON names the file and the parser's position."""
        directory = _model_dir(tmp_path, '{"hidden_size": 8,')

        with pytest.raises(ModelConfigError, match=r"config\.json: not valid JSON: .*line 1"):
            load_model(str(directory))

    def test_list_json(self, tmp_path: Path) -> None:
        """A JSON list is not a config."""
        directory = _model_dir(tmp_path, "[1, 2, 3]")

        with pytest.raises(ModelConfigError, match=r"config\.json: expected a JSON object, got list"):
            load_model(str(directory))

    def test_unreadable(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 are reported as unreadable."""
        directory = _model_dir(tmp_path, b"\xff\xfe\x00garbage")

        with pytest.raises(ModelConfigError, match=r"config\.json: not UTF-8 text"):
            load_model(str(directory))

    def test_infinity_is_accepted(self, tmp_path: Path) -> None:
        """Python-style Infinity (Mamba-Codestral) is read; it sits in no size field."""
        source = CATALOG_DIR / "mistralai/Mamba-Codestral-7B-v0.1/config.json"
        directory = _model_dir(tmp_path, source.read_bytes())

        assert {"mamba"} == set(load_model(str(directory)).layer_types)

    def test_nan_in_size_field(self, tmp_path: Path) -> None:
        """NaN in a size field parses as JSON but fails validation, naming the field."""
        directory = _model_dir(
            tmp_path, LLAMA_1B.decode().replace('"vocab_size": 128256', '"vocab_size": NaN')
        )

        with pytest.raises(ModelConfigError, match="vocab_size: expected a positive integer, got nan"):
            load_model(str(directory))

    @pytest.mark.parametrize(
        "ref",
        [
            "../etc/passwd",
            "./x",
            "~/nothing-here-xyz",
            "a/b/c",
            "a\\b",
            "/no/such/dir",
            "x/config.json",
            "org/..",
            "..",
            "org/na..me",
        ],
    )
    def test_traversal_and_path_like_refs(self, ref: str) -> None:
        """Path-like or traversal-looking refs never reach the hub."""
        with pytest.raises(ModelConfigError):
            load_model(ref)

    def test_empty_ref(self) -> None:
        """An empty ref is refused."""
        with pytest.raises(ModelConfigError, match="model:"):
            load_model("  ")


class TestCatalog:
    def test_case_insensitive(self) -> None:
        """Catalog ids match ignoring case; the arch records the catalog source and provenance."""
        arch = load_model("QWEN/qwen3-8b")

        assert arch.source == "catalog:Qwen/Qwen3-8B"
        assert arch.provenance == "VERBATIM"
        assert arch.name == "QWEN/qwen3-8b"

    def test_catalog_entry_lookup(self) -> None:
        """catalog_entry finds ids case-insensitively and returns None for unknown ids."""
        assert catalog_entry("qwen/QWEN3-8B").id == "Qwen/Qwen3-8B"
        assert catalog_entry("acme/unknown") is None

    def test_local_directory_wins(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An existing relative directory named like a catalog id is read from disk."""
        target = tmp_path / "Qwen" / "Qwen3-8B"
        target.mkdir(parents=True)
        (target / "config.json").write_bytes(LLAMA_1B)
        monkeypatch.chdir(tmp_path)

        assert load_model("Qwen/Qwen3-8B").source.startswith("local:")


# --------------------------------------------------------------------------- hub, via a stand-in

_LOAD = """
import json, sys
from planner.errors import ModelConfigError
from planner.models.sources import load_model
try:
    arch = load_model(sys.argv[1], timeout_s=5)
except ModelConfigError as err:
    print(json.dumps({"error": str(err)}))
else:
    print(json.dumps({"hidden": arch.hidden_size, "layers": arch.num_layers, "tied": arch.tie_word_embeddings,
                      "source": arch.source, "quant": arch.quant and arch.quant.method,
                      "total": arch.safetensors_total_bytes}))
"""


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    repos = {
        "acme/tiny-llama": {
            "config.json": LLAMA_1B,
            "hf_quant_config.json": b'{"quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}}',
            "model.safetensors.index.json": b'{"metadata": {"total_size": 2471645184}, "weight_map": {}}',
        },
        "acme/no-config": {"README.md": b"hello"},
    }
    server, url = fake_hub.start(repos)
    yield url
    server.shutdown()
    server.server_close()


def _run_load(ref: str, endpoint: str, home: Path) -> tuple[dict[str, object], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(HERE.parents[2])
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, ref], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), elapsed


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestHub:
    def test_download(self, hub: str, tmp_path: Path) -> None:
        """A hub id is fetched through hf_hub_download: config plus both companion files."""
        result, _ = _run_load("acme/tiny-llama", hub, tmp_path)

        expected = {
            "hidden": 2048,
            "layers": 16,
            "tied": True,
            "source": "hub:acme/tiny-llama",
            "quant": "modelopt",
            "total": 2471645184,
        }
        assert expected == result

    def test_unknown_repo(self, hub: str, tmp_path: Path) -> None:
        """A repository the hub does not know gives a one-line 'not found' error."""
        result, _ = _run_load("acme/missing", hub, tmp_path)

        assert result["error"].startswith("model 'acme/missing' not found on the Hugging Face hub")
        assert "\n" not in result["error"]

    def test_repo_without_config(self, hub: str, tmp_path: Path) -> None:
        """A repository without config.json says so."""
        result, _ = _run_load("acme/no-config", hub, tmp_path)

        assert "'acme/no-config' has no config.json" in result["error"]

    def test_unreachable_endpoint(self, tmp_path: Path) -> None:
        """A closed port fails fast with the network hint, without hf_hub_download's retries."""
        result, elapsed = _run_load("acme/tiny-llama", f"http://127.0.0.1:{_closed_port()}", tmp_path)

        assert result["error"].startswith(
            "cannot fetch config.json for 'acme/tiny-llama' from the Hugging Face hub (http://127.0.0.1:"
        )
        assert "check the id, network access or HF_TOKEN, or pass a local directory" in result["error"]
        assert elapsed < 30
