"""Reading user-supplied files with bounded size, and writing outputs safely, with one-line errors.

Each error names the file; `error` is the InputError subclass the caller's domain uses. Writes are all or
nothing, honour the umask, never follow or replace what is not a regular file, and `write_tree` (generate's
output directory) is locked, undone exactly on failure or signal, and recovers from a killed run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


# --- writing --------------------------------------------------------------------------------------------
#
# Every output is created by this process with O_EXCL (so never through a link, never over something else)
# and the mode the umask gives (0666/0777 asked for). `write_tree` holds an exclusive lock on the output's
# parent directory for the whole run, stages inside the directory it fills, records what it moved in a
# journal, and on any failure or signal puts back exactly what it moved: see write_tree.

STAGING = ".vllm-planner-staging-"  # a run's private directory; a later run removes one whose owner is gone
KEPT = ".vllm-planner-kept-"  # where entries stay that another program added mid-run and that cannot go back
LOCK_WAIT_S = 60.0  # how long generate waits for another generate writing beside the same output directory
_JOURNAL = "journal.json"  # in a staging directory: the entries moved into the output, by inode
_AT_FDCWD = -100
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_file(path: Path, text: str) -> None:
    """Write one regular file all or nothing: a temporary file beside it, renamed over it (never half a page).

    The file gets the mode the umask gives. Anything at `path` but a regular file (a directory, symlink, FIFO,
    device or socket) is refused, not replaced."""
    path = Path(path)
    what = _not_a_regular_file(path)
    if what:
        raise InputError(f"{path}: {what}")
    parent = path.parent if str(path.parent) else Path(".")
    tmp: Path | None = None
    try:
        with _Deferred() as sig:  # a signal before the rename removes the temporary file, then is handled
            try:
                fd, tmp = _new_temp(parent, path.name)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(text.encode("utf-8"))
                sig.check()
                os.replace(tmp, path)
                tmp = None
            finally:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror or e}") from None
    except _Interrupted as e:
        raise InputError(f"{path}: interrupted by signal {e.signum}; nothing written") from None


def _not_a_regular_file(path: Path) -> str:
    """Why `path` may not be written over ('' when it is missing or a regular file)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return ""
    except OSError as e:
        return f"cannot write: {e.strerror or e}"
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISLNK(mode):
        return "is a symbolic link, not a regular file; give the real file"
    return f"is {_kind(mode)}, not a regular file; refusing to replace it"


def _new_temp(parent: Path, name: str) -> tuple[int, Path]:
    """A new file `.NAME.RANDOM.tmp` in `parent`, made here (O_EXCL, never through a link), mode 0666 less the
    umask."""
    stem = name if len(name.encode()) <= 200 else "vllm-planner"
    for _ in range(100):
        tmp = parent / f".{stem}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, _NEW_FILE, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(parent))


def write_tree(out: Path, files: Mapping[str, str], *, force: bool, marker: str) -> None:
    """Write `files` (relative path -> text) as the directory `out`, all or nothing.

    - A missing `out` (and its missing parents) is staged in a private directory beside it and renamed into
      place in one step. An existing directory (empty, or with `force` one this tool wrote) is filled in
      place: staged in a private directory inside it, so every rename stays within one filesystem and the
      parent needs no write access (a mount point works).
    - An exclusive lock (flock) on the parent directory serialises runs writing there; a second run waits
      up to LOCK_WAIT_S, then fails with one line.
    - A non-empty `out` is replaced only with `force`, and only when every entry in it is a regular file
      listed in its `marker` (a JSON manifest with `files`) or a directory holding them; --force never
      deletes anything else (FIFOs, sockets, symlinks, other files or directories), nor a file that
      arrives while it runs.
    - A failure or SIGINT/SIGTERM/SIGHUP undoes exactly what this run did: entries it moved into `out` (by
      inode) go, the old ones come back, the directories it created are removed if still empty. The
      signal is handled after that, as it would have been. A run killed outright leaves its staging
      directory and journal, which the next run uses to undo it before it starts.
    - `out` given as a symbolic link is refused: the tool does not write through links.
    """
    out = Path(out)
    out = Path(os.path.abspath(out)) if out.name in ("", ".", "..") else out.absolute()
    try:
        with _Deferred() as sig:
            _Tree(out, marker, sig).write(files, force=force)
    except _Interrupted as e:  # the signal's own handler returned instead of ending the run
        raise InputError(f"--output-dir {out}: interrupted by signal {e.signum}; nothing written") from None


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Deferred:
    """SIGINT, SIGTERM and SIGHUP held while a tree is written: `check()` turns one into _Interrupted at a
    safe point, so the undo runs whole, and the signal is delivered again (to its own handler) on exit."""

    def __enter__(self) -> _Deferred:
        self.pending: int | None = None
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                handler = signal.getsignal(sig)
                if handler is None or handler == signal.SIG_IGN:
                    continue
                self.saved[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, _frame: Any) -> None:
        if self.pending is None:
            self.pending = signum

    def check(self) -> None:
        if self.pending is not None:
            raise _Interrupted(self.pending)

    def __exit__(self, *_: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.pending is not None:
            signal.raise_signal(self.pending)


class _Tree:
    def __init__(self, out: Path, marker: str, sig: _Deferred) -> None:
        self.out, self.parent, self.marker, self.sig = out, out.parent, marker, sig
        self.created: list[tuple[Path, tuple[int, int]]] = []  # parent directories this run made

    def write(self, files: Mapping[str, str], *, force: bool) -> None:
        pfd: int | None = None
        try:
            pfd = self._lock_parent()
            try:
                st = os.lstat(self.out)
            except FileNotFoundError:
                self._write_new(pfd, files)
                return
            if stat.S_ISLNK(st.st_mode):
                raise InputError(f"--output-dir {self.out}: is a symbolic link; give the real directory "
                                 "(generate does not write through links)")
            if not stat.S_ISDIR(st.st_mode):
                raise InputError(f"--output-dir {self.out}: exists and is not a directory")
            self._write_into(st, files, force=force)
        except BaseException as e:  # interrupts too: the parents this run made go again
            for path, ident in reversed(self.created):
                with contextlib.suppress(OSError):
                    if _ident(os.lstat(path)) == ident:
                        os.rmdir(path)  # only if still empty: another party may have used it meanwhile
            if isinstance(e, OSError):
                raise InputError(f"--output-dir {self.out}: cannot write: {e.strerror or e}") from None
            raise
        finally:
            if pfd is not None:
                os.close(pfd)

    # -- the lock -----------------------------------------------------------------------------------------

    def _lock_parent(self) -> int | None:
        """The parent directory (made if missing), open and exclusively locked. None when it cannot be read
        (the renames below stay safe without the lock, as they never replace anything)."""
        for _ in range(8):
            self._make_parents()
            try:
                fd = os.open(self.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except PermissionError:
                return None
            try:
                self._wait_for_lock(fd)
                if _ident(os.fstat(fd)) == _ident(os.stat(self.parent)):
                    return fd
            except FileNotFoundError:
                pass  # another run removed the parent it had made: make it again
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise InputError(f"--output-dir {self.out}: its parent directory keeps changing; try again")

    def _make_parents(self) -> None:
        missing = []
        p = self.parent
        while not os.path.lexists(p) and p != p.parent:
            missing.append(p)
            p = p.parent
        for p in reversed(missing):
            try:
                os.mkdir(p)
            except FileExistsError:
                continue  # made by another party: not this run's to remove
            self.created.append((p, _ident(os.lstat(p))))

    def _wait_for_lock(self, fd: int) -> None:
        deadline = time.monotonic() + LOCK_WAIT_S
        while not _try_lock(fd):
            self.sig.check()
            if time.monotonic() >= deadline:
                raise InputError(f"--output-dir {self.out}: another vllm-planner generate has been writing into "
                                 f"{self.parent} for {LOCK_WAIT_S:g} s; try again when it has finished")
            time.sleep(0.02)

    # -- a new directory ----------------------------------------------------------------------------------

    def _write_new(self, pfd: int | None, files: Mapping[str, str]) -> None:
        dfd = pfd if pfd is not None else \
            os.open(self.parent, getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if pfd is not None:  # an unreadable parent cannot be listed
                _clear_stale(dfd, self.parent)
            stage = _Stage.make(dfd, self.parent)
            try:
                stage.fill(files, self.sig)
                self.sig.check()
                try:
                    _rename_noreplace(stage.fd, "new", dfd, self.out.name)  # the whole tree appears at once
                except FileExistsError:
                    raise InputError(f"--output-dir {self.out}: created by another program while generate "
                                     "wrote; nothing written") from None
            finally:
                stage.remove()
        finally:
            if dfd != pfd:
                os.close(dfd)

    # -- an existing directory, filled in place -----------------------------------------------------------

    def _write_into(self, st: os.stat_result, files: Mapping[str, str], *, force: bool) -> None:
        out = self.out
        ofd = os.open(out, _DIR_FLAGS)
        try:
            if _ident(os.fstat(ofd)) != _ident(st):
                raise InputError(f"--output-dir {out}: replaced by another program while generate ran; try again")
            live = _clear_stale(ofd, out)
            if live:
                raise InputError(f"--output-dir {out}: another vllm-planner generate is writing into it ({live[0]}); "
                                 "try again when it has finished")
            old = sorted(os.listdir(ofd))
            owned: dict[str, tuple[int, int]] = {}
            if old and not force:
                raise InputError(f"--output-dir {out}: exists and is not empty; pass --force to replace it")
            if old:
                owned = _check_owned(out, self.marker)
            stage = _Stage.make(ofd, out)
            keep = False
            try:
                stage.fill(files, self.sig)
                self.sig.check()
                keep = self._swap(ofd, stage, old, owned)
            except BaseException:
                keep = _undo(ofd, stage.fd)
                raise
            finally:
                stage.remove(keep=keep)
        finally:
            os.close(ofd)

    def _swap(self, ofd: int, stage: _Stage, old: list[str], owned: dict[str, tuple[int, int]]) -> bool:
        """Move the old entries into the stage and the new ones into `out`; True when entries another party
        added mid-run could not go back and stay in the stage (renamed KEPT...)."""
        nfd = os.open("new", _DIR_FLAGS, dir_fd=stage.fd)
        try:
            new = sorted(os.listdir(nfd), key=lambda n: (n == self.marker, n))  # the manifest last
            stage.write_journal({n: _ident(os.lstat(n, dir_fd=nfd)) for n in new})
            if old:
                os.mkdir("old", 0o700, dir_fd=stage.fd)
                with _open_dir("old", stage.fd) as oldfd:
                    for n in old:
                        self.sig.check()
                        _rename_noreplace(ofd, n, oldfd, n)
            for n in new:
                self.sig.check()
                try:
                    _rename_noreplace(nfd, n, ofd, n)
                except FileExistsError:
                    raise InputError(f"--output-dir {self.out}: {n} appeared while generate wrote; nothing "
                                     "written, the directory is as it was") from None
            os.unlink(_JOURNAL, dir_fd=stage.fd)  # the commit point: from here on the new tree stands
        finally:
            os.close(nfd)
        try:
            return bool(old) and not _discard_old(stage.path / "old", self.out, owned)
        except OSError:  # the new tree stands; what could not be sorted out stays in the kept stage
            return True


class _Stage:
    """A private (0700), locked directory `.vllm-planner-staging-*`: `new/` holds the tree being written,
    `old/` what it replaces, `journal.json` the entries moved into the output while the swap is under way."""

    def __init__(self, dfd: int, dpath: Path, name: str, fd: int) -> None:
        self.dfd, self.path, self.name, self.fd = dfd, dpath / name, name, fd

    @classmethod
    def make(cls, dfd: int, dpath: Path) -> _Stage:
        for _ in range(100):
            name = STAGING + secrets.token_hex(8)
            try:
                os.mkdir(name, 0o700, dir_fd=dfd)
            except FileExistsError:
                continue
            fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            if _try_lock(fd) and _same(fd, name, dfd):
                return cls(dfd, dpath, name, fd)
            os.close(fd)  # another run took it for a dead run's and removed it: make another
        raise FileExistsError(errno.EEXIST, "no free staging name", str(dpath))

    def fill(self, files: Mapping[str, str], sig: _Deferred) -> None:
        new = self.path / "new"
        os.mkdir(new)  # 0777 less the umask: the output directory's own mode when it is renamed into place
        for rel, text in files.items():
            sig.check()
            parts = rel.split("/")
            if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise ValueError(f"not a relative path: {rel!r}")
            target = new.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, _NEW_FILE, 0o777 if rel.endswith(".sh") else 0o666)
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8"))

    def write_journal(self, moved: dict[str, tuple[int, int]]) -> None:
        fd = os.open(_JOURNAL, _NEW_FILE, 0o600, dir_fd=self.fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps({"new": moved}).encode())
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self, *, keep: bool = False) -> None:
        try:
            if keep:
                _rename_noreplace(self.dfd, self.name, self.dfd, KEPT + self.name[len(STAGING):])
            else:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(self.fd)


def _undo(dfd: int, sfd: int) -> bool:
    """Undo the swap of the staging directory open as `sfd` inside the directory `dfd`: entries its journal
    lists go back into the stage if they are still the ones it moved (same inode), and the old entries come
    back. Without a journal nothing was moved yet, or the swap had finished. True when an old entry cannot
    come back because its name was taken meanwhile (the stage is then kept)."""
    moved = _read_journal(sfd)
    if moved is None:
        return False
    with _open_dir("new", sfd) as nfd:
        for name, ident in moved.items():
            with contextlib.suppress(FileNotFoundError):
                if _ident(os.lstat(name, dir_fd=dfd)) == ident:
                    _rename_noreplace(dfd, name, nfd, name)
    stuck = False
    with contextlib.suppress(FileNotFoundError), _open_dir("old", sfd) as oldfd:
        for name in os.listdir(oldfd):
            try:
                _rename_noreplace(oldfd, name, dfd, name)
            except FileExistsError:
                stuck = True
    return stuck


def _clear_stale(dfd: int, dpath: Path) -> list[str]:
    """Undo and remove the staging directories in `dpath` whose run is gone (their lock is free); the names of
    those still in use. A staging name that is not a directory of this user's is left alone."""
    live = []
    for name in sorted(os.listdir(dfd)):
        if not name.startswith(STAGING):
            continue
        try:
            sfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except OSError:
            continue
        try:
            if os.fstat(sfd).st_uid != os.geteuid():
                continue
            if not _try_lock(sfd):
                live.append(name)
                continue
            if not _same(sfd, name, dfd):
                continue
            if _undo(dfd, sfd):
                _rename_noreplace(dfd, name, dfd, KEPT + name[len(STAGING):])
            else:
                shutil.rmtree(dpath / name, ignore_errors=True)
        finally:
            os.close(sfd)
    return live


def _read_journal(sfd: int) -> dict[str, tuple[int, int]] | None:
    try:
        fd = os.open(_JOURNAL, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=sfd)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            data = json.loads(handle.read(1 << 20))["new"]
        moved = {name: (int(dev), int(ino)) for name, (dev, ino) in data.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # cut short by a kill while it was written: nothing had been moved yet
    if any(not n or "/" in n or "\0" in n or n in (".", "..") for n in moved):
        return None
    return moved


def _discard_old(old: Path, out: Path, owned: dict[str, tuple[int, int]]) -> bool:
    """Delete the replaced tree, now under `old`: only the regular files and directories `_check_owned` saw
    (same inode). Anything another party added meanwhile goes back to its place in `out` if that is free.
    True when nothing is left."""
    _prune(old, "", owned)
    _put_back(old, out)
    _prune(old, "", owned)
    return not os.listdir(old)


def _prune(d: Path, rel: str, owned: dict[str, tuple[int, int]]) -> None:
    for entry in list(os.scandir(d)):
        r = rel + entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            _prune(Path(entry.path), r + "/", owned)
            if owned.get(r) == _ident(st):
                with contextlib.suppress(OSError):
                    os.rmdir(entry.path)
        elif stat.S_ISREG(st.st_mode) and owned.get(r) == _ident(st):
            os.unlink(entry.path)


def _put_back(src: Path, dst: Path) -> None:
    for entry in list(os.scandir(src)):
        target = dst / entry.name
        try:
            _rename_noreplace(_AT_FDCWD, entry.path, _AT_FDCWD, str(target))
        except FileExistsError:
            if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
                _put_back(Path(entry.path), target)
        except OSError:
            pass  # stays in the stage, which is then kept


def _check_owned(out: Path, marker: str) -> dict[str, tuple[int, int]]:
    """Refuse to replace `out` unless each entry in it is a regular file its manifest lists, or a directory
    on the way to one; the (device, inode) of each, by relative path."""
    try:
        fd = os.open(out / marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ValueError
            listed = {f for f in json.loads(handle.read(1 << 20))["files"] if isinstance(f, str)}
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"--output-dir {out}: not written by vllm-planner (no readable {marker}); "
                         "refusing to replace it, even with --force") from None
    listed.add(marker)
    dirs = {"/".join(f.split("/")[:i]) for f in listed for i in range(1, f.count("/") + 1)}
    owned: dict[str, tuple[int, int]] = {}
    extra: list[tuple[str, str]] = []

    def walk(d: Path, rel: str) -> None:
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if len(extra) > 3:
                return
            r = rel + entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and r in dirs:
                owned[r] = _ident(st)
                walk(Path(entry.path), r + "/")
            elif stat.S_ISREG(st.st_mode):
                if r in listed:
                    owned[r] = _ident(st)
                else:
                    extra.append((r, ""))
            else:
                extra.append((r + "/" if stat.S_ISDIR(st.st_mode) else r, _kind(st.st_mode)))

    walk(out, "")
    if extra:
        shown = ", ".join(f"{r} ({k})" if k else r for r, k in extra[:3]) + (" and more" if len(extra) > 3 else "")
        what = "entries" if any(k for _, k in extra) else "files"
        raise InputError(f"--output-dir {out}: holds {what} vllm-planner did not write ({shown}); move them or "
                         f"choose another directory; --force replaces only the regular files listed in {marker}")
    return owned


def _kind(mode: int) -> str:
    return ("a directory" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode) else
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _same(fd: int, name: str, dfd: int) -> bool:
    """Whether `name` in `dfd` is still the directory open as `fd`."""
    try:
        return _ident(os.stat(name, dir_fd=dfd, follow_symlinks=False)) == _ident(os.fstat(fd))
    except FileNotFoundError:
        return False


def _try_lock(fd: int) -> bool:
    """Take an exclusive flock without waiting: False when another holds it; True, too, on a filesystem
    without locks."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return True
        raise
    return True


@contextlib.contextmanager
def _open_dir(name: str, dfd: int) -> Iterator[int]:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
    try:
        yield fd
    finally:
        os.close(fd)


_RENAME_NOREPLACE = 1
_renameat2: Any = None


def _rename_noreplace(src_dfd: int, src: str, dst_dfd: int, dst: str) -> None:
    """rename(2) that fails with FileExistsError instead of replacing `dst` (renameat2 RENAME_NOREPLACE;
    where the kernel or filesystem lacks it, a check and a rename, which the parent's lock covers)."""
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
    if _renameat2:
        import ctypes

        if _renameat2(src_dfd, os.fsencode(src), dst_dfd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    try:
        os.lstat(dst, dir_fd=None if dst_dfd == _AT_FDCWD else dst_dfd)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=None if src_dfd == _AT_FDCWD else src_dfd,
                  dst_dir_fd=None if dst_dfd == _AT_FDCWD else dst_dfd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
