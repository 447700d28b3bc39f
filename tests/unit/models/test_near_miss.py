"""Near misses and aliases (issue 21): an id that is not bundled and that the hub cannot give ends with the
closest bundled ids, the same network first ("same architecture" for an instruct/base pair); an alias plans on
its target's config and says so.

The hub cases run the real huggingface_hub code in a subprocess (HF_ENDPOINT is read at import time) against
a loopback stand-in: fake_hub.py (the hub's RepoNotFound answer), a server that answers 404 to everything,
and a closed port (the hub unreachable). No mocks, no network.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.models.sources import (
    alias_note,
    catalog_entry,
    closest_catalog_ids,
    list_catalog,
    load_catalog_dir,
    load_model,
    model_notes,
    near_misses,
)
from planner.suggest import NearMiss, parse_model_name, rank_model_ids

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fake_hub  # noqa: E402 - test helper beside this file

ALIAS, TARGET = "meta-llama/Llama-3.1-405B-Instruct", "meta-llama/Llama-3.1-405B"


def _plain(*ids: str) -> list[tuple[str, str, str | None]]:
    return [(i, i, None) for i in ids]


# --------------------------------------------------------------------------- ranking (pure)


class TestRanking:
    def test_instruct_base_pair_is_same_architecture(self) -> None:
        """The issue's example: the 405B Instruct id finds the bundled base first, marked same architecture,
        ahead of the other sizes of the family (and of ids that only look alike)."""
        got = rank_model_ids(ALIAS, _plain("meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
                                           TARGET, "meta-llama/Llama-3.2-1B-Instruct"))

        assert got[0] == NearMiss(TARGET, "same architecture")
        assert str(got[0]) == "meta-llama/Llama-3.1-405B (same architecture)"
        assert got[1] == NearMiss("meta-llama/Llama-3.1-70B-Instruct", "same family")  # 70B is closer to 405B

    def test_name_similarity_alone_loses_to_family_and_size(self) -> None:
        """A spelling closer to the query does not beat the same family and size."""
        got = rank_model_ids("Qwen/Qwen3-30B-A3B-Instruct-2507",
                             _plain("Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B", "Qwen/Qwen2.5-32B-Instruct"))

        assert [m.id for m in got[:2]] == ["Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-32B"]
        assert got[0].why == "same family and size"  # the 2507 update changes the context: not "same architecture"
        assert got[1].why == "same family"

    @pytest.mark.parametrize(("query", "why"), [
        ("meta-llama/Llama-3.1-405B-FP8", "same architecture; unquantized"),
        ("meta-llama/Llama-3.1-405B-Instruct", "same architecture"),
        ("meta-llama/Llama-3.1-405B", None),  # the same name: nothing to explain
        ("Llama-3.1-405B", None),
        ("meta-llama/Llama-3.1-450B", "same family"),
    ])
    def test_what_the_hint_says(self, query: str, why: str | None) -> None:
        got = rank_model_ids(query, _plain(TARGET))

        assert got == [NearMiss(TARGET, why)]

    def test_quantized_rerelease_is_named(self) -> None:
        got = rank_model_ids("nvidia/Llama-3.1-70B-Instruct", [("nvidia/Llama-3.1-70B-Instruct-FP8",
                                                                 "nvidia/Llama-3.1-70B-Instruct-FP8", "modelopt")])

        assert got[0].why == "same architecture; FP8 checkpoint"

    @pytest.mark.parametrize("query", ["meta-llama/Llama-3.1-8B-Instrcut", "META-LLAMA/llama-3.1-8b-instruckt",
                                       "Llama-3.1-8B-Instruct", "acme/Llama-3.1-8B-Instruct"])
    def test_typos_and_other_orgs_are_plain(self, query: str) -> None:
        """A misspelling or another organisation of a bundled name: the bundled id, unannotated, first."""
        got = rank_model_ids(query, _plain("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"))

        assert got[0] == NearMiss("meta-llama/Llama-3.1-8B-Instruct")

    def test_numbers_are_not_typos(self) -> None:
        """3.1 vs 3.2 is another model, never a misspelling: the same family (3.2) ranks first."""
        got = rank_model_ids("meta-llama/Llama-3.2-8B-Instruct",
                             _plain("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.2-1B-Instruct"))

        assert got == [NearMiss("meta-llama/Llama-3.2-1B-Instruct", "same family"),
                       NearMiss("meta-llama/Llama-3.1-8B-Instruct")]

    def test_an_alias_and_its_target_are_suggested_once(self) -> None:
        got = rank_model_ids("meta-llama/Llama-3.1-405B-Instruct-FP8",
                             [(TARGET, TARGET, None), (ALIAS, TARGET, None)])

        assert got == [NearMiss(ALIAS, "same architecture; unquantized")]

    def test_nothing_close(self) -> None:
        assert rank_model_ids("acme/zzzz", _plain(TARGET, "Qwen/Qwen3-8B")) == []

    def test_parse_model_name(self) -> None:
        name = parse_model_name("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8")

        assert (name.family, name.sizes, name.quant) == (("llama", "3.1"), ("405b",), ("fp8",))
        assert parse_model_name("mistralai/Mixtral-8x7B-Instruct-v0.1").size == 56e9
        assert parse_model_name("Qwen/Qwen3-30B-A3B").sizes == ("30b", "a3b")


class TestCatalogNearMisses:
    def test_bundled_quantized_variant_query(self) -> None:
        """Against the bundled catalog: an FP8 re-release of the aliased 405B finds the alias first."""
        got = near_misses("meta-llama/Llama-3.1-405B-Instruct-FP8")

        assert str(got[0]) == f"{ALIAS} (same architecture; unquantized)"
        assert TARGET not in [m.id for m in got]  # the alias stands for the same config
        assert closest_catalog_ids("meta-llama/Llama-3.1-405B-Instruct-FP8")[0] == ALIAS

    def test_instruct_of_a_bundled_base(self) -> None:
        """Mixtral-8x22B-Instruct uses another vocabulary (32768): not an alias, but the base is its near miss."""
        assert catalog_entry("mistralai/Mixtral-8x22B-Instruct-v0.1") is None
        assert str(near_misses("mistralai/Mixtral-8x22B-Instruct-v0.1")[0]) == (
            "mistralai/Mixtral-8x22B-v0.1 (same architecture)")

    def test_at_most_three(self) -> None:
        assert 0 < len(near_misses("Qwen/Qwen3-15B")) <= 3


# --------------------------------------------------------------------------- the hub path


_LOAD = """
import json, sys
from planner.errors import ModelConfigError
from planner.models.sources import load_model
try:
    load_model(sys.argv[1], timeout_s=5)
except ModelConfigError as err:
    print(json.dumps({"error": str(err)}))
else:
    print(json.dumps({"error": None}))
"""


class _NotFound(http.server.BaseHTTPRequestHandler):
    """A stand-in that answers 404 to every request, without the hub's X-Error-Code header."""

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self, with_body: bool) -> None:
        body = b'{"error": "Not Found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    server, url = fake_hub.start({})  # knows no repository: RepoNotFound for every id
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def plain_404() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _error(ref: str, endpoint: str, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(HERE.parents[2]))
    done = subprocess.run([sys.executable, "-c", _LOAD, ref], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    error = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    assert error is not None and "\n" not in error
    return error


def _suggested(error: str) -> list[str]:
    assert error.endswith("?")
    return error.split("; did you mean: ", 1)[1].removesuffix("?").split(", ")


class TestHub:
    def test_repo_not_found(self, hub: str, tmp_path: Path) -> None:
        """The hub says RepoNotFound: 'not found' and the same network first."""
        error = _error("mistralai/Mixtral-8x22B-Instruct-v0.1", hub, tmp_path)

        assert error.startswith("model 'mistralai/Mixtral-8x22B-Instruct-v0.1' not found on the Hugging Face hub")
        assert _suggested(error)[0] == "mistralai/Mixtral-8x22B-v0.1 (same architecture)"

    def test_plain_404(self, plain_404: str, tmp_path: Path) -> None:
        """A bare 404 (no hub error code) gets the same hint."""
        error = _error("meta-llama/Llama-3.1-405B-Instruct-FP8", plain_404, tmp_path)

        assert "meta-llama/Llama-3.1-405B-Instruct-FP8" in error
        assert _suggested(error)[0] == f"{ALIAS} (same architecture; unquantized)"

    def test_hub_unreachable(self, tmp_path: Path) -> None:
        """Nothing listens: the network hint, then the near misses."""
        error = _error("google/gemma-3-27b-pt", f"http://127.0.0.1:{_closed_port()}", tmp_path)

        assert error.startswith("cannot fetch config.json for 'google/gemma-3-27b-pt' from the Hugging Face hub")
        assert _suggested(error)[0] == "google/gemma-3-27b-it (same architecture)"

    def test_nothing_close_has_no_hint(self, hub: str, tmp_path: Path) -> None:
        assert "did you mean" not in _error("acme/zzzz", hub, tmp_path)

    def test_a_bundled_alias_never_reaches_the_hub(self, tmp_path: Path) -> None:
        """The alias resolves offline, whatever the endpoint."""
        assert _error_or_none(ALIAS, f"http://127.0.0.1:{_closed_port()}", tmp_path) is None


def _error_or_none(ref: str, endpoint: str, home: Path) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), PYTHONPATH=str(HERE.parents[2]))
    done = subprocess.run([sys.executable, "-c", _LOAD, ref], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["error"]


# --------------------------------------------------------------------------- aliases


class TestAliases:
    def test_every_alias_targets_a_bundled_config_of_the_same_architecture(self) -> None:
        aliases = [e for e in list_catalog() if e.alias_of]

        assert {ALIAS, "mistralai/Mixtral-8x7B-Instruct-v0.1"} <= {e.id for e in aliases}
        for e in aliases:
            target = catalog_entry(e.alias_of)
            assert target is not None and target.alias_of is None, e.id  # no alias of an alias, no dangling one
            assert e.alias_of in e.provenance and e.source and e.notes  # each says where the geometry comes from

    def test_alias_plans_on_the_target_config(self) -> None:
        arch = load_model(ALIAS)
        target = load_catalog_dir(TARGET)

        assert arch.name == ALIAS  # the id the user gave is what vLLM serves
        assert arch.source == f"catalog:{ALIAS}"
        assert arch.provenance == catalog_entry(ALIAS).provenance
        for field in ("hidden_size", "num_layers", "num_attention_heads", "num_kv_heads", "vocab_size",
                      "intermediate_size", "max_position_embeddings", "rope_scaling", "layer_types"):
            assert getattr(arch, field) == getattr(target, field), field

    def test_alias_says_so(self) -> None:
        note = alias_note(load_model(ALIAS.lower()))

        assert note is not None
        assert note.startswith(f"{ALIAS} is planned with the bundled {TARGET} config (same geometry: ")
        assert "126 layers" in note and note.endswith(")")
        assert model_notes(load_model(ALIAS)) == [note]

    def test_the_plan_warns_that_it_used_the_target_config(self) -> None:
        from planner.app import plan
        from planner.schemas import PlanRequest

        p = plan(PlanRequest(model=ALIAS, gpu="H200", gpus=8))
        assert any(w.message.startswith(f"{ALIAS} is planned with the bundled {TARGET} config") for w in p.warnings)
        assert p.serve_command.startswith(f"vllm serve {ALIAS} ")

    def test_no_note_for_a_bundled_config(self) -> None:
        assert alias_note(load_model(TARGET)) is None
        assert model_notes(load_model("Qwen/Qwen3-8B")) == []

    def test_aliases_yaml_records_have_no_files(self) -> None:
        path = HERE.parents[2] / "planner" / "models" / "catalog" / "sources" / "aliases.yaml"
        records = [json.loads(line[2:]) for line in path.read_text(encoding="utf-8").splitlines()
                   if line.startswith("- {")]

        assert records and all(r["files"] == {} and r["alias_of"] for r in records)
        assert {r["id"] for r in records} == {e.id for e in list_catalog() if e.alias_of}
