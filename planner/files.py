"""Reading user-supplied files with bounded size and one-line errors (captures, logs).

Each error names the file; `error` is the InputError subclass the caller's domain uses.
"""

from __future__ import annotations

import stat
from pathlib import Path

from planner.errors import InputError


def read_bounded(path: Path, *, limit: int, what: str, error: type[InputError] = InputError) -> bytes:
    """The file's bytes, refusing directories, missing or unreadable files and files over `limit` bytes."""
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{path}: is a directory, not {what}")
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise error(f"{path}: not a regular file, expected {what}")
        size = st.st_size
        if size > limit:
            raise error(f"{path}: {size:,} bytes is larger than the {limit // 2**20} MiB allowed for {what}")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)  # the file may grow between stat and read
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{path}: larger than the {limit // 2**20} MiB allowed for {what}")
    return data


def write_tree(out: Path, files: dict[str, str], *, force: bool, marker: str) -> None:
    """Write `files` (relative path -> text) as the directory `out`, all or nothing.

    Everything is written into a temporary sibling directory and renamed into place, so a failure
    leaves no partial output. An existing `out` is replaced only with `force`, and only when it is
    empty or holds `marker` (a previous run's output): --force never deletes a directory it did not write.
    """
    import os
    import shutil
    import tempfile

    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise InputError(f"--output-dir {out}: exists and is not a directory")
        entries = list(out.iterdir())
        if entries and not force:
            raise InputError(f"--output-dir {out}: exists and is not empty; pass --force to replace it")
        if entries and not (out / marker).is_file():
            raise InputError(f"--output-dir {out}: not written by vllm-planner (no {marker}); "
                             "refusing to replace it, even with --force")
    parent = out.absolute().parent
    created: list[Path] = []
    for p in reversed([parent, *parent.parents]):
        if not p.exists():
            created.append(p)
    tmp: Path | None = None
    backup: Path | None = None
    try:
        for p in created:
            p.mkdir()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
        for rel, text in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            if rel.endswith(".sh"):
                target.chmod(0o755)
            else:
                target.chmod(0o644)
        tmp.chmod(0o755)
        if out.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            os.rename(out, backup / "old")
        os.rename(tmp, out)
        tmp = None
    except BaseException as e:  # interrupts too: never leave a half-written tree behind
        if backup is not None and (backup / "old").exists() and not out.exists():
            os.rename(backup / "old", out)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for p in reversed(created):
            shutil.rmtree(p, ignore_errors=True)
        if isinstance(e, OSError):
            raise InputError(f"--output-dir {out}: cannot write: {e.strerror or e}") from None
        raise
    finally:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
