"""The parsed-YAML cache is private and verified (issue 22 item 6).

Whatever sits in the cache directory, a plan's decisions are those of the shipped YAML: an edited, foreign,
deep, huge-or-odd entry is a miss (re-parse from the real file), a symlink planted in the directory is never
followed, a FIFO never blocks, and a directory that others could write to is not used at all. Every plan
here is compared with one made with VLLM_PLANNER_NO_CACHE=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from planner.hardware import catalog
from planner.policy.loader import vendor_pack_paths
from planner.resources import gpu_catalog_dir
from tests.clirun import run

PLAN = ("plan", "--model", "Qwen/Qwen3-8B", "--gpu", "H100", "--json")
PACK = vendor_pack_paths()[0]
GPU = gpu_catalog_dir() / "h100-sxm-80gb.yaml"


class Hung(BaseException):
    pass


def _hung(signum: int, frame: object) -> None:
    raise Hung("the plan blocked")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()


def entry_name(path: Path) -> str:
    return f"yaml-{_sha(path)}.json"


def plan_json(budget_s: float = 10.0, *, catalog_too: bool = False) -> str:
    """The plan's JSON; fails if it takes longer than `budget_s` (a blocked read is interrupted). The pack is
    read by every plan; the GPU catalog, memoised per process, only with `catalog_too`."""
    if catalog_too:
        catalog._shipped_raw.cache_clear()
        catalog._shipped_spec.cache_clear()
    old = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        rc, out, err = run(*PLAN)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert rc == 0, err[-800:]
    assert err == "", err[-800:]
    return out


@pytest.fixture(scope="module")
def expected() -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_PLANNER_NO_CACHE", "1")
        mp.delenv("VLLM_PLANNER_CACHE_DIR", raising=False)
        return plan_json(60, catalog_too=True)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("VLLM_PLANNER_NO_CACHE", raising=False)
    monkeypatch.setenv("VLLM_PLANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    old = os.umask(0o022)
    try:
        yield tmp_path / "cache"
    finally:
        os.umask(old)
        catalog._shipped_raw.cache_clear()
        catalog._shipped_spec.cache_clear()


def _altered_pack() -> dict:
    """The vendor pack as parsed, with vLLM's default memory utilisation changed from 0.92 to 0.5."""
    from planner.yamlio import load_yaml_text

    doc = load_yaml_text(PACK.read_text(encoding="utf-8"), str(PACK), fast=True)
    assert doc["params"]["default_gpu_memory_utilization"]["default"] == 0.92
    doc["params"]["default_gpu_memory_utilization"]["default"] = 0.5
    return doc


def _legacy(doc: object) -> bytes:
    """An entry as the first cache wrote them: the parsed document, bare."""
    return json.dumps(doc).encode()


def _hashed(payload: bytes, source: Path = PACK) -> bytes:
    """An entry for `source` with correct hashes around `payload` (what one able to write the file could forge)."""
    from planner.yamlio import _entry_bytes

    return _entry_bytes(_sha(source), payload)


def _edit(raw: bytes, pattern: bytes, repl: bytes) -> bytes:
    edited = re.sub(pattern, repl, raw, count=1)
    assert edited != raw
    return edited


def test_an_edited_entry_is_a_miss(cache: Path, expected: str) -> None:
    assert plan_json(catalog_too=True) == expected  # fills the cache
    pack = cache / entry_name(PACK)
    pack.write_bytes(_edit(pack.read_bytes(), rb'("default_gpu_memory_utilization":\s*\{[^}]*?"default":\s*)0\.92',
                           rb"\g<1>0.5"))
    gpu = cache / entry_name(GPU)
    gpu.write_bytes(_edit(gpu.read_bytes(), rb'("memory_bytes":\s*)85017493504', rb"\g<1>42949672960"))
    assert plan_json(catalog_too=True) == expected
    assert plan_json(catalog_too=True) == expected  # and the entries were rewritten from the real files


def _malformed_gpu() -> bytes:
    from planner.yamlio import load_yaml_text

    doc = load_yaml_text(GPU.read_text(encoding="utf-8"), str(GPU), fast=True)
    doc["memory_bytes"] = "lots"
    return _legacy(doc)


PLANTED: dict[str, tuple[Path, Callable[[], bytes]]] = {
    "legacy-altered-pack": (PACK, lambda: _legacy(_altered_pack())),
    "legacy-malformed-gpu": (GPU, _malformed_gpu),  # an error here would blame the shipped h100 YAML
    "deep-10000": (PACK, lambda: b"[" * 10_000 + b"]" * 10_000),
    "deep-10000-hashed": (PACK, lambda: _hashed(b"[" * 10_000 + b"]" * 10_000)),
    # the pack loader re-parses the YAML when a document does not validate: the catalog does not
    "deep-100-hashed": (GPU, lambda: _hashed(b'{"a":' * 100 + b"1" + b"}" * 100, GPU)),
}


@pytest.mark.parametrize(("target", "content"), PLANTED.values(), ids=PLANTED.keys())
def test_a_planted_entry_is_a_miss(cache: Path, expected: str, target: Path, content: Callable[[], bytes]) -> None:
    cache.mkdir(mode=0o700)
    (cache / entry_name(target)).write_bytes(content())
    assert plan_json(catalog_too=target == GPU) == expected


def test_a_fifo_entry_does_not_block(cache: Path, expected: str) -> None:
    cache.mkdir(mode=0o700)
    os.mkfifo(cache / entry_name(PACK))
    start = time.monotonic()
    assert plan_json(budget_s=5) == expected
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("content", ["legacy", "hashed"])
def test_a_symlinked_entry_is_not_followed(cache: Path, expected: str, tmp_path: Path, content: str) -> None:
    doc = _altered_pack()
    victim = tmp_path / "victim.json"
    victim.write_bytes(_legacy(doc) if content == "legacy" else _hashed(json.dumps(doc).encode()))
    before = victim.read_bytes()
    cache.mkdir(mode=0o700)
    (cache / entry_name(PACK)).symlink_to(victim)
    assert plan_json() == expected
    assert victim.read_bytes() == before


def test_a_symlink_at_the_old_temp_name_is_not_followed(cache: Path, expected: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    cache.mkdir(mode=0o700)
    for path in (PACK, GPU):  # where the first cache wrote: entry.with_suffix(f".{pid}.tmp")
        (cache / entry_name(path)).with_suffix(f".{os.getpid()}.tmp").symlink_to(victim)
    assert plan_json(catalog_too=True) == expected
    assert victim.read_text() == "precious\n"


def test_entries_are_private_regular_files(cache: Path, expected: str) -> None:
    assert plan_json(catalog_too=True) == expected
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    names = sorted(p.name for p in cache.iterdir())
    assert entry_name(PACK) in names and entry_name(GPU) in names
    for p in cache.iterdir():
        st = p.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, p.name
        assert re.fullmatch(r"yaml-[0-9a-f]{64}\.json", p.name), p.name  # no temp file left behind


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "other-owner"])
def test_a_directory_others_could_write_is_not_used(cache: Path, expected: str, monkeypatch: pytest.MonkeyPatch,
                                                    how: str) -> None:
    cache.mkdir()
    os.chmod(cache, {"group-writable": 0o770, "world-writable": 0o777, "other-owner": 0o700}[how])
    if how == "other-owner":
        uid = os.geteuid() + 4242
        monkeypatch.setattr(os, "geteuid", lambda: uid)
    planted = cache / entry_name(PACK)
    planted.write_bytes(_legacy(_altered_pack()))
    before = planted.read_bytes()
    assert plan_json(catalog_too=True) == expected
    assert [p.name for p in cache.iterdir()] == [planted.name], "the planner wrote into the directory"
    assert planted.read_bytes() == before, "the planner rewrote the entry"
