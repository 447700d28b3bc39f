"""The audit log: one JSON record per line, appended whole or not at all.

A record is written with O_APPEND, in one write() when the kernel takes it all (the usual case, so that
a concurrent reader never sees half a record). A short write is continued; if the disk fills up (or any
other error occurs) after part of the record went in, the file is cut back to where the record began, so
that no half record stays and the next record is never glued onto one. Only a regular file (or a new
one) is appended to: a FIFO, a device, a socket or a directory, named directly or through a symlink, is
refused with one error line and without blocking. Appenders that use this module serialise through an
advisory lock on the file, so that a rollback never cuts another planner's record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from planner.errors import InputError

_KINDS = ((stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a FIFO (named pipe)"),
          (stat.S_ISSOCK, "is a socket"), (stat.S_ISCHR, "is a character device"),
          (stat.S_ISBLK, "is a block device"))


def _not_regular(mode: int) -> str | None:
    """Why a file of this mode cannot be an audit log, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, what in _KINDS:
        if test(mode):
            return f"{what}, not a regular file"
    return "is not a regular file"


def _error(path: Path, what: str) -> InputError:
    return InputError(f"--audit-log {path}: {what}")


def _rollback(fd: int, start: int, end: int) -> bool:
    """Cut the file back to `start` (where this record began) if nothing was appended after our `end`."""
    try:
        if os.fstat(fd).st_size != end:
            return False
        os.ftruncate(fd, start)
        return True
    except OSError:
        return False


def _lock(fd: int, wait_s: float = 5.0) -> None:
    """Take the advisory lock that planners appending to this file share, waiting at most `wait_s`; without
    it (no locks on this filesystem, or a holder that does not let go) the append goes on: the rollback
    still checks that nobody wrote after this record before it cuts anything."""
    try:
        import fcntl
    except ImportError:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        except OSError:
            return


class _PartialRecordError(Exception):
    """Part of the record went in and could not be taken out (another writer appended after it)."""


def _append_all(fd: int, data: bytes) -> None:
    """Append `data` whole (looping on short writes) and flush it to disk, or take out the part written and
    raise (OSError: the file is as it was; _PartialRecordError: it could not be restored)."""
    view = memoryview(data)
    done = 0
    start = end = -1
    try:
        while done < len(data):
            n = os.write(fd, view[done:])
            if n <= 0:  # a regular file never does this for a non-empty write; do not spin on it
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: the offset is now just past what this write added
            if start < 0:
                start = end - n
            done += n
        os.fsync(fd)  # a full disk or a failing device may only say so here
    except BaseException as e:
        if start >= 0 and not _rollback(fd, start, end) and isinstance(e, OSError):
            raise _PartialRecordError(e.strerror or str(e)) from e
        raise


def append_audit(path: Path, record: dict[str, Any]) -> None:
    """Append `record` to `path` as one line of JSON, whole or not at all (InputError, exit 2, otherwise)."""
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    try:
        st = os.stat(path)  # follows a symlink: refuse what it points to before opening it (opening a device acts)
    except FileNotFoundError:
        pass  # a new file (or a dangling symlink: O_CREAT creates its target, as the shell's >> would)
    except (OSError, ValueError) as e:
        raise _error(path, f"cannot append: {getattr(e, 'strerror', None) or e}") from None
    else:
        why = _not_regular(st.st_mode)
        if why:
            raise _error(path, why)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO with no reader appeared after the check
            raise _error(path, "is a FIFO (named pipe), not a regular file") from None
        raise _error(path, f"cannot append: {e.strerror}") from None
    try:
        why = _not_regular(os.fstat(fd).st_mode)  # what was opened, whatever the path now names
        if why:
            raise _error(path, why)
        _lock(fd)
        try:
            _append_all(fd, line)
        except _PartialRecordError as e:
            raise _error(path, f"cannot append: {e}; a partial record could not be taken out (another writer "
                               "appended after it)") from None
        except OSError as e:
            raise _error(path, f"cannot append: {e.strerror or e}; the log is unchanged") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing releases the lock
