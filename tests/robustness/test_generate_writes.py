"""`generate`'s writes under concurrency, signals, odd filesystems and hostile names (issue 22 items 2, 4, 11).

What each test proves, and how:
- two runs into one directory (forked processes started together, renames slowed so they overlap):
  never two successes, never a mixed tree; the loser ends in one clean error;
- rollback: another party writes into the output (or a parent this run created) while it runs; a failure
  then removes only this run's files and directories, and --force keeps what arrived after its check;
- a real empty mount point (tmpfs) under a really read-only parent (a read-only bind mount), in a private
  mount namespace (`unshare -m`): skipped where that is not allowed; as a non-root user, a chmod 0555
  parent instead;
- a run killed (SIGKILL) or terminated (SIGTERM, SIGINT) in the middle of its renames, at a real
  rename: the next run succeeds without --force and the tree is exactly its own;
- --force refuses a FIFO, an unlisted empty directory and a symlink in place of a listed file;
- the umask decides the modes; a symlinked -o is named as one; `$(` reaches Kubernetes escaped
  (checked by a port of Kubernetes' own variable expansion).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.errors import InputError
from planner.files import write_file, write_tree
from tests.clirun import one_error_line, run

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "planner" / "models" / "catalog"
MARKER = ".vllm-planner.json"
QWEN = ["--model", "Qwen/Qwen3-8B", "--gpu", "H100"]
NAMES = ["README.md", "benchmark.sh", "docker-compose.yaml", "kubernetes/deployment.yaml",
         "kubernetes/pvc.yaml", "plan.json", "profile.yaml", "serve_command.sh"]


def bundle(tag: str) -> dict[str, str]:
    """A tree shaped like generate's, every file saying which run wrote it."""
    files = {name: f"{tag} {name}\n" for name in NAMES}
    files[MARKER] = json.dumps({"generator": "vllm-planner", "files": sorted([*files, MARKER])}) + "\n"
    return files


def tree(p: Path) -> dict[str, str]:
    """Relative path -> text for regular files, '<dir>' for directories, '<other>' for anything else."""
    out: dict[str, str] = {}
    for f in sorted(p.rglob("*")):
        rel = str(f.relative_to(p))
        out[rel] = ("<symlink>" if f.is_symlink() else f.read_text() if f.is_file() else
                    "<dir>" if f.is_dir() else "<other>")
    return out


def files_of(t: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in t.items() if v != "<dir>"}


class Hooked(dict):  # type: ignore[type-arg]
    """The files to write, running `hook` once `after` of them have been handed out (while the run writes)."""

    def __init__(self, files: dict[str, str], after: int, hook: Callable[[], None]) -> None:
        super().__init__(files)
        self.after, self.hook = after, hook

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        for i, kv in enumerate(super().items()):
            if i == self.after:
                self.hook()
            yield kv


def _renames_call(action: Callable[[int], None]) -> None:
    """Run `action(n)` before the n-th rename of the process, whatever function does the renaming."""
    import planner.files as files

    count = [0]

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def renaming(*a: Any, **k: Any) -> Any:
            count[0] += 1
            action(count[0])
            return real(*a, **k)
        return renaming

    os.rename = wrap(os.rename)  # type: ignore[assignment]
    os.replace = wrap(os.replace)  # type: ignore[assignment]
    if hasattr(files, "_rename_noreplace"):
        files._rename_noreplace = wrap(files._rename_noreplace)  # type: ignore[attr-defined]


# --- two runs at once ------------------------------------------------------------------------------------

def _racer(out: str, tag: str, barrier: Any, results: Any) -> None:
    _renames_call(lambda n: time.sleep(0.05))  # each rename and mkdir slow, so the two runs overlap
    real_mkdir = os.mkdir

    def slow_mkdir(*a: Any, **k: Any) -> None:
        time.sleep(0.05)
        real_mkdir(*a, **k)

    os.mkdir = slow_mkdir  # type: ignore[assignment]
    barrier.wait()
    try:
        write_tree(Path(out), bundle(tag), force=False, marker=MARKER)
        results.put((tag, "ok"))
    except InputError as e:
        results.put((tag, f"error: {e}"))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put((tag, f"crash: {type(e).__name__}: {e}"))


@pytest.mark.parametrize("where", ["empty-dir", "missing-parents"])
def test_two_concurrent_runs_never_both_succeed_or_mix_trees(tmp_path: Path, where: str) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(2):
        base = tmp_path / f"r{round_}"
        base.mkdir()
        out = base / "out" if where == "empty-dir" else base / "a" / "b" / "out"
        if where == "empty-dir":
            out.mkdir()
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_racer, args=(str(out), tag, barrier, results)) for tag in "AB"]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        got = dict(results.get(timeout=5) for _ in procs)
        winners = [tag for tag, r in got.items() if r == "ok"]
        assert len(winners) == 1, got
        loser = "B" if winners == ["A"] else "A"
        assert got[loser].startswith("error: ") and "\n" not in got[loser], got
        assert files_of(tree(out)) == bundle(winners[0]), (got, tree(out))
        assert sorted(p.name for p in base.iterdir()) == (["out"] if where == "empty-dir" else ["a"])


# --- rollback removes only what this run made ------------------------------------------------------------

def test_rollback_keeps_what_another_party_put_in_a_parent_this_run_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"

    def meanwhile() -> None:
        (tmp_path / "a" / "theirs.txt").write_text("theirs")
        raise OSError(28, "No space left on device")  # the write fails midway

    with pytest.raises(InputError, match="cannot write"):
        write_tree(out, Hooked(bundle("A"), 4, meanwhile), force=False, marker=MARKER)
    assert tree(tmp_path) == {"a": "<dir>", "a/theirs.txt": "theirs"}  # a/b was this run's: gone


def test_a_name_taken_while_filling_is_never_overwritten_and_the_run_is_undone(tmp_path: Path) -> None:
    out = tmp_path / "mnt"
    out.mkdir()

    def meanwhile() -> None:
        (out / "docker-compose.yaml").write_text("theirs")
        (out / "notes").mkdir()
        (out / "notes" / "n.txt").write_text("theirs too")

    with pytest.raises(InputError, match=r"docker-compose\.yaml"):
        write_tree(out, Hooked(bundle("A"), 3, meanwhile), force=False, marker=MARKER)
    assert tree(out) == {"docker-compose.yaml": "theirs", "notes": "<dir>", "notes/n.txt": "theirs too"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]


def test_force_keeps_files_that_arrive_after_its_check(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_tree(out, bundle("A"), force=False, marker=MARKER)

    def meanwhile() -> None:
        (out / "kubernetes" / "theirs.yaml").write_text("theirs")

    write_tree(out, Hooked(bundle("B"), 3, meanwhile), force=True, marker=MARKER)
    assert files_of(tree(out)) == {**bundle("B"), "kubernetes/theirs.yaml": "theirs"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


# --- an empty mount point under a read-only parent -------------------------------------------------------

def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --make-rprivate / && mount -t tmpfs none /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def test_an_empty_mount_point_under_a_read_only_parent_is_filled_and_replaced(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    mnt = parent / "mnt"
    mnt.mkdir(parents=True)
    cli = [sys.executable, "-c", "from planner.cli import main; main()"]
    if os.geteuid() == 0:
        if not _can_mount():
            pytest.skip("needs a private mount namespace (unshare -m) to mount a tmpfs and a read-only bind")
        # inside the namespace: the parent read-only (EROFS even for root), a tmpfs on mnt (another device:
        # a rename from the parent would be EXDEV); the tree is printed before the namespace and tmpfs go
        script = textwrap.dedent(f"""
            set -e
            mount --make-rprivate /
            mount --bind {parent} {parent} && mount -o remount,bind,ro {parent}
            mount -t tmpfs -o mode=0755 none {mnt}
            if touch {parent}/probe 2>/dev/null; then echo "parent writable"; exit 9; fi
            test "$(stat -c %d {parent})" != "$(stat -c %d {mnt})"
            {' '.join(cli[:2])} "{cli[2]}" generate {' '.join(QWEN)} -o {mnt} --json
            {' '.join(cli[:2])} "{cli[2]}" generate {' '.join(QWEN)} --max-model-len 4096 -o {mnt} --force --json
            cd {mnt} && find . | sort && grep -c 'max-model-len 4096' serve_command.sh
        """)
        r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                           cwd=ROOT)
        assert r.returncode == 0, r.stdout + r.stderr
        listing = r.stdout.split("}\n")[-1].split()
        assert "./plan.json" in listing and "./kubernetes/deployment.yaml" in listing, r.stdout
        assert not any("staging" in x for x in listing), listing
        assert listing[-1] == "1"
    else:  # an unprivileged user: the parent's mode is enough
        parent.chmod(0o555)
        try:
            r = subprocess.run([*cli, "generate", *QWEN, "-o", str(mnt)], capture_output=True, text=True,
                               timeout=120, cwd=ROOT)
            assert r.returncode == 0, r.stderr
            assert (mnt / "plan.json").is_file()
        finally:
            parent.chmod(0o755)
    assert list(parent.iterdir()) == [mnt]  # nothing was (or could be) written beside the mount point


# --- killed and interrupted runs -------------------------------------------------------------------------

def _run_and_signal(out: Path, sig: int, *, at_rename: int, force: bool, tag: str) -> int:
    """Run write_tree in a child that sends itself `sig` just before its `at_rename`-th rename."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from tests.robustness.test_generate_writes import _renames_call, bundle, MARKER
        from planner.files import write_tree
        def act(n):
            if n == {at_rename}:
                os.kill(os.getpid(), {int(sig)})
        _renames_call(act)
        try:
            write_tree(Path({str(out)!r}), bundle({tag!r}), force={force}, marker=MARKER)
        except KeyboardInterrupt:
            sys.exit(130)
        print("finished")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode


# SIGINT is a regression guard (the old code undid itself on KeyboardInterrupt too); SIGKILL and SIGTERM
# left stray files that blocked every later run
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_run_stopped_during_its_renames_never_blocks_the_next(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "mnt"
    out.mkdir()
    rc = _run_and_signal(out, sig, at_rename=4, force=False, tag="A")
    assert rc in (-sig, 130), rc
    if sig != signal.SIGKILL:  # a catchable signal: the run undid itself before it ended
        assert list(out.iterdir()) == []
    write_tree(out, bundle("B"), force=False, marker=MARKER)  # no --force needed: nothing stray is left
    assert files_of(tree(out)) == bundle("B")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]


@pytest.mark.parametrize("at_rename", [2, 11])  # while the old entries move out; while the new ones move in
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_a_replace_stopped_midway_leaves_the_old_tree_or_is_recovered(tmp_path: Path, sig: signal.Signals,
                                                                      at_rename: int) -> None:
    out = tmp_path / "deploy"
    write_tree(out, bundle("A"), force=False, marker=MARKER)
    rc = _run_and_signal(out, sig, at_rename=at_rename, force=True, tag="B")
    assert rc == -sig, rc
    if sig == signal.SIGTERM:
        assert files_of(tree(out)) == bundle("A")  # undone: the old tree, whole
    write_tree(out, bundle("C"), force=True, marker=MARKER)
    assert files_of(tree(out)) == bundle("C")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]  # no staging or backup left anywhere


def test_a_stray_staging_directory_does_not_block_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "mnt"
    stray = out / ".vllm-planner-staging-0123abcd"
    (stray / "new" / "kubernetes").mkdir(parents=True)
    (stray / "new" / "README.md").write_text("half")
    (stray / "new" / "kubernetes" / "pvc.yaml").write_text("half")
    rc, _, err = run("generate", *QWEN, "-o", str(out))
    assert rc == 0, err
    assert not stray.exists() and (out / "plan.json").is_file()
    assert not any(p.name.startswith(".vllm-planner-staging") for p in out.iterdir())


# --- --force deletes only regular files it listed --------------------------------------------------------

def test_force_refuses_fifos_unlisted_dirs_and_symlinks_and_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    assert run("generate", *QWEN, "-o", str(out))[0] == 0
    os.mkfifo(out / "pipe")
    (out / "empty").mkdir()
    before = tree(out)
    rc, _, err = run("generate", *QWEN, "-o", str(out), "--force")
    line = one_error_line(err)
    assert rc == 2 and "did not write" in line and "pipe" in line and "empty" in line, line
    assert tree(out) == before and stat.S_ISFIFO(os.lstat(out / "pipe").st_mode)
    (out / "pipe").unlink()
    (out / "empty").rmdir()
    (out / "plan.json").unlink()
    (out / "plan.json").symlink_to("/etc/hostname")  # a listed name that is no longer a file we wrote
    rc, _, err = run("generate", *QWEN, "-o", str(out), "--force")
    assert rc == 2 and "plan.json" in one_error_line(err) and (out / "plan.json").is_symlink()


# --- modes, names and messages ---------------------------------------------------------------------------

@pytest.fixture()
def umask() -> Iterator[Callable[[int], None]]:
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _modes(p: Path) -> dict[str, int]:
    return {str(f.relative_to(p)): stat.S_IMODE(f.lstat().st_mode) for f in p.rglob("*")}


@pytest.mark.parametrize("mask,file_mode,exe_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_generated_files_honour_the_umask(tmp_path: Path, umask: Callable[[int], None], mask: int,
                                          file_mode: int, exe_mode: int) -> None:
    umask(mask)
    new, filled = tmp_path / "new", tmp_path / "filled"
    filled.mkdir(mode=0o755)
    for out in (new, filled):
        write_tree(out, bundle("A"), force=False, marker=MARKER)
        modes = _modes(out)
        assert modes["kubernetes"] == exe_mode and modes["plan.json"] == file_mode, modes
        assert modes["serve_command.sh"] == exe_mode and modes[MARKER] == file_mode, modes
    assert stat.S_IMODE(new.stat().st_mode) == exe_mode
    write_file(tmp_path / "report.html", "<p>x</p>")
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == file_mode


def test_write_file_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="not a regular file"):
        write_file(tmp_path / "fifo", "x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


def test_a_symlinked_output_dir_is_named_as_one_and_left_alone(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    rc, _, err = run("generate", *QWEN, "-o", str(tmp_path / "link"))
    assert rc == 2 and "is a symbolic link" in one_error_line(err)
    assert list(real.iterdir()) == []


def test_a_busy_output_parent_ends_in_one_clean_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    import planner.files as files

    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.3, raising=False)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # another generate holds the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(InputError, match="another vllm-planner generate"):
            write_tree(tmp_path / "out", bundle("A"), force=False, marker=MARKER)
        assert time.monotonic() - t0 < 5
    finally:
        os.close(fd)
    assert list(tmp_path.iterdir()) == []


# --- Kubernetes variable references ----------------------------------------------------------------------

def k8s_expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of $(VAR) in command/args/env (third_party/forked/golang/expansion)."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = s.find(")", i + 2)
                if end != -1:
                    name = s[i + 2:end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]["containers"]
    t = doc["spec"]["leaderWorkerTemplate"]
    return t["leaderTemplate"]["spec"]["containers"] + t["workerTemplate"]["spec"]["containers"]


@pytest.mark.parametrize("model,extra", [("Qwen/Qwen3-8B", []),
                                         ("deepseek-ai/DeepSeek-R1", ["--nodes", "2", "--gpus-per-node", "8"])])
def test_a_model_dir_named_like_a_kubernetes_variable_is_not_substituted(tmp_path: Path, model: str,
                                                                         extra: list[str]) -> None:
    name = "$(HF_TOKEN)x$$y$"
    local = tmp_path / name
    local.mkdir()
    shutil.copy(CATALOG / model / "config.json", local / "config.json")
    out = tmp_path / "deploy"
    rc, _, err = run("generate", "--model", str(local), "--gpu", "H100", *extra, "-o", str(out))
    assert rc == 0, err
    workload = "deployment.yaml" if not extra else "leaderworkerset.yaml"
    doc = yaml.safe_load((out / "kubernetes" / workload).read_text())
    env = {"HF_TOKEN": "SECRET", "LWS_LEADER_ADDRESS": "leader-0"}
    seen = []
    for c in _containers(doc):
        for value in [*c.get("command", []), *c.get("args", []), *(e.get("value", "") for e in c.get("env", []))]:
            final = k8s_expand(value, env)
            assert "SECRET" not in final, (value, final)
            seen.append(final)
    assert any(f"/models/{name}" in s for s in seen), seen
    if extra:  # the one reference meant for Kubernetes still works
        assert any("--address=leader-0:" in s for s in seen), seen
    else:
        assert doc["spec"]["template"]["spec"]["containers"][0]["args"][0] == "/models/$$(HF_TOKEN)x$$$y$"
