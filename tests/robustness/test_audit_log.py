"""The audit log gets whole records or a clean error (issue 22 item 5).

A short write is continued; a full disk after part of a record went in leaves the file as it was (no half
record, nothing for the next record to be glued onto) and exits 2 naming the file; only a regular file is
appended to, and anything else (a FIFO, a device, a directory, or a symlink to one) is refused at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.clirun import one_error_line, run

PLAN = ("plan", "--model", "Qwen/Qwen3-8B", "--gpu", "H100")
_real_write = os.write


class Hung(BaseException):
    """Not an Exception: no `except OSError` on the way may swallow it."""


def _hung(signum: int, frame: object) -> None:
    raise Hung("the audit append blocked")


def plan(log: Path, budget_s: float = 10.0) -> tuple[int, str, str]:
    old = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        return run(*PLAN, "--audit-log", str(log))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # shared: every plan after the first reads the parsed YAML back


@pytest.fixture()
def log(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VLLM_PLANNER_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield tmp_path / "audit.jsonl"


@pytest.fixture()
def append_time(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds each audit append took (the CLI looks append_audit up in planner.app when it needs it)."""
    import planner.app

    spent: list[float] = []
    real = planner.app.append_audit

    def timed(*args: object) -> None:
        start = time.monotonic()
        try:
            real(*args)
        finally:
            spent.append(time.monotonic() - start)

    monkeypatch.setattr(planner.app, "append_audit", timed)
    return spent


def _records(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _writes_to(path: Path, fake: Callable[[int, bytes], int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Route os.write calls on `path` (and only those) to `fake`."""
    real = os.write

    def write(fd: int, data: bytes) -> int:
        try:
            st = os.fstat(fd)
            target = path.stat()
        except OSError:
            return real(fd, data)
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return fake(fd, bytes(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_short_writes_are_continued(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan(log)[0] == 0
    calls = []

    def third(fd: int, data: bytes) -> int:  # the kernel may take less than asked for
        calls.append(len(data))
        return _real_write(fd, data[: max(1, len(data) // 3)])

    _writes_to(log, third, monkeypatch)
    rc, _, err = plan(log)
    assert rc == 0, err
    assert len(calls) > 1
    records = _records(log)
    assert len(records) == 2 and records[0].keys() == records[1].keys()


def test_a_full_disk_after_half_a_record_leaves_the_log_as_it_was(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan(log)[0] == 0
    before = log.read_bytes()
    state = {"calls": 0}

    def half_then_enospc(fd: int, data: bytes) -> int:
        state["calls"] += 1
        if state["calls"] == 1:
            return _real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    _writes_to(log, half_then_enospc, monkeypatch)
    rc, out, err = plan(log)
    assert rc == 2
    line = one_error_line(err)
    assert str(log) in line and "No space left on device" in line, line
    assert out == ""
    assert log.read_bytes() == before  # no half record left behind
    monkeypatch.setattr(os, "write", _real_write)  # the disk has room again
    assert plan(log)[0] == 0
    assert len(_records(log)) == 2  # the next record starts on a line of its own


def test_an_error_at_fsync_takes_the_record_out(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Delayed allocation, quotas on network filesystems, a failing disk: the error may come only at fsync."""
    assert plan(log)[0] == 0
    before = log.read_bytes()
    real = os.fsync

    def fsync(fd: int) -> None:
        st, target = os.fstat(fd), log.stat()
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc, _, err = plan(log)
    assert rc == 2 and str(log) in one_error_line(err)
    assert log.read_bytes() == before


def test_a_full_disk_before_anything_went_in(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log.write_text("")

    def enospc(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    _writes_to(log, enospc, monkeypatch)
    rc, _, err = plan(log)
    assert rc == 2 and str(log) in one_error_line(err)
    assert log.read_bytes() == b""


def _fifo(tmp: Path, readers: list[int]) -> Path:
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


def _fifo_with_reader(tmp: Path, readers: list[int]) -> Path:
    path = _fifo(tmp, readers)
    readers.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # a reader waiting: opening to write succeeds
    return path


def _device(tmp: Path, readers: list[int]) -> Path:
    return Path(os.devnull)


def _directory(tmp: Path, readers: list[int]) -> Path:
    return tmp


def _symlink_to(make: Callable[[Path, list[int]], Path]) -> Callable[[Path, list[int]], Path]:
    def build(tmp: Path, readers: list[int]) -> Path:
        (tmp / "link").symlink_to(make(tmp, readers))
        return tmp / "link"

    return build


NOT_REGULAR: dict[str, tuple[Callable[[Path, list[int]], Path], str]] = {
    "fifo": (_fifo, "FIFO"),
    "fifo-with-reader": (_fifo_with_reader, "FIFO"),
    "device": (_device, "device"),
    "symlink-to-fifo": (_symlink_to(_fifo), "FIFO"),
    "symlink-to-fifo-with-reader": (_symlink_to(_fifo_with_reader), "FIFO"),
    "symlink-to-device": (_symlink_to(_device), "device"),
    "symlink-to-directory": (_symlink_to(_directory), "directory"),
}


@pytest.mark.parametrize(("make", "what"), NOT_REGULAR.values(), ids=NOT_REGULAR.keys())
def test_only_a_regular_file_is_appended_to(log: Path, append_time: list[float],
                                            make: Callable[[Path, list[int]], Path], what: str) -> None:
    readers: list[int] = []
    path = make(log.parent, readers)
    try:
        rc, out, err = plan(path, budget_s=5)
        for fd in readers:
            with contextlib.suppress(BlockingIOError):
                assert os.read(fd, 1 << 16) == b"", "a record went into the FIFO"
    finally:
        for fd in readers:
            os.close(fd)
    assert len(append_time) == 1 and append_time[0] < 1
    assert rc == 2, err
    line = one_error_line(err)
    assert str(path) in line and what in line, line
    assert out == ""
