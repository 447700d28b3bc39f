"""Reading user-supplied files with bounded size and one-line errors (captures, logs).

Each error names the file; `error` is the InputError subclass the caller's domain uses.
"""

from __future__ import annotations

from pathlib import Path

from planner.errors import InputError


def read_bounded(path: Path, *, limit: int, what: str, error: type[InputError] = InputError) -> bytes:
    """The file's bytes, refusing directories, missing or unreadable files and files over `limit` bytes."""
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{path}: is a directory, not {what}")
        size = path.stat().st_size
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
