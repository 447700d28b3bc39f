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


def write_file(path: Path, text: str) -> None:
    """Write one file all or nothing: a temporary file beside it, renamed over it (never half a page)."""
    import os
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tree(out: Path, files: dict[str, str], *, force: bool, marker: str) -> None:
    """Write `files` (relative path -> text) as the directory `out`, all or nothing.

    Everything is written into a temporary sibling directory and renamed into place, so a failure
    leaves no partial output. An existing empty directory (a mount point, say) is filled in place.
    A non-empty `out` is replaced only with `force`, and only when its `marker` (a JSON manifest with
    `files`) shows an earlier run wrote every file in it: --force never deletes what it did not write.
    """
    import os
    import shutil
    import tempfile

    out = Path(out)
    in_place = False
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise InputError(f"--output-dir {out}: exists and is not a directory")
        entries = list(out.iterdir())
        in_place = not entries
        if entries and not force:
            raise InputError(f"--output-dir {out}: exists and is not empty; pass --force to replace it")
        if entries:
            _check_owned(out, marker)
    parent = out.absolute().parent
    created = [p for p in reversed([parent, *parent.parents]) if not p.exists()]
    tmp: Path | None = None
    backup: Path | None = None
    moved: list[Path] = []
    try:
        for p in created:
            p.mkdir()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
        for rel, text in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            target.chmod(0o755 if rel.endswith(".sh") else 0o644)
        tmp.chmod(0o755)
        if in_place:
            for entry in sorted(tmp.iterdir()):
                os.rename(entry, out / entry.name)
                moved.append(out / entry.name)
            tmp.rmdir()
        else:
            if out.exists():
                backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
                os.rename(out, backup / "old")
            os.rename(tmp, out)
        tmp = None
    except BaseException as e:  # interrupts too: never leave a half-written tree behind
        for m in moved:
            shutil.rmtree(m, ignore_errors=True) if m.is_dir() else m.unlink(missing_ok=True)
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


def _check_owned(out: Path, marker: str) -> None:
    """Refuse to replace `out` unless its manifest lists every file in it."""
    import json

    try:
        listed = set(json.loads((out / marker).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"--output-dir {out}: not written by vllm-planner (no readable {marker}); "
                         "refusing to replace it, even with --force") from None
    present = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() or p.is_symlink()}
    extra = sorted(present - listed - {marker})
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise InputError(f"--output-dir {out}: holds files vllm-planner did not write ({shown}); "
                         "move them or choose another directory; --force replaces only its own output")
