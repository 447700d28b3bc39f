"""Containment for the durable-rules C extension: evaluate in a worker process with a timeout.

durable-rules 2.0.28 can segfault (upstream #381), abort, or hang (shared/spec/durable-rules.md
sections 1, 9, 10). The engine therefore runs in a child process that owns it: the parent sends
(compiled rules, facts) through a pipe and waits at most `timeout_s`. A dead child (any signal or
exit) or a silent one becomes a RuleEngineError (exit 1) with a message naming what happened and
the way around it; the next evaluation starts a fresh child.

The child is forked on Linux (it inherits the loaded modules, a few milliseconds) and spawned
elsewhere. It registers each compiled stage once (durable-rules never frees rulesets) and lives
for the rest of the process. This module does not import durable_rules; the child calls
planner.policy.engine, the one module that does.

The child never outlives its parent (issue 22 item 3), however the parent ends (SIGKILL included):
it closes its copy of the parent's end of the pipe (so the parent's death is an EOF), asks the
kernel for SIGKILL when the parent dies (Linux PR_SET_PDEATHSIG), and, where that is not available
or the engine is idle, polls the pipe with a timeout and exits once its parent has changed. Its
stdin/stdout/stderr are /dev/null, so a caller reading the planner's output (`$(...)`,
`communicate()`) never waits on the child, and it prints no faulthandler dump when the engine
crashes (the parent reports the signal).
"""

from __future__ import annotations

import faulthandler
import math
import multiprocessing as mp
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from planner.errors import InputError, RuleEngineError
from planner.policy.compiler import CRule
from planner.policy.reference import Firing

DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 3600.0  # $VLLM_PLANNER_ENGINE_TIMEOUT's bound: finite, so a wait always ends
_WORKAROUND = "set VLLM_PLANNER_EVALUATOR=reference to evaluate rule packs without durable_rules"
_WATCH_S = 0.5  # how often an idle child checks that its parent is still there


def _set_parent_death_signal() -> None:
    """Linux: SIGKILL this process when the thread that forked it exits (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # no libc prctl: the getppid watchdog in _serve still ends the child
        pass


def _detach(conn: Connection, parent_end: Connection | None) -> None:
    """Make the child unable to outlive or hold up its parent (see the module docstring)."""
    if parent_end is not None:
        parent_end.close()  # the parent's end: with it closed here, the parent's death is EOF on `conn`
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C (sent to the whole group)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: SIGTERM just ends the child
    faulthandler.disable()  # a crash is reported by the parent, not dumped into the caller's log
    _set_parent_death_signal()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != conn.fileno() and fd != devnull:
            os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def _serve(conn: Connection, parent_end: Connection | None = None, parent_pid: int | None = None) -> None:
    """Child loop: evaluate requests until the pipe closes or the parent is gone."""
    _detach(conn, parent_end)
    from planner.policy import engine

    while True:
        if parent_pid is not None and os.getppid() != parent_pid:
            return  # orphaned (re-parented): the parent died without us noticing the EOF
        try:
            if not conn.poll(_WATCH_S):
                continue
            rules, facts = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", engine.evaluate(rules, facts)))
        except RuleEngineError as e:
            conn.send(("error", str(e)))


def _timeout() -> float:
    raw = os.environ.get("VLLM_PLANNER_ENGINE_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"$VLLM_PLANNER_ENGINE_TIMEOUT={raw!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
        raise InputError(f"$VLLM_PLANNER_ENGINE_TIMEOUT={raw!r} must be a number of seconds greater than 0 "
                         f"and at most {MAX_TIMEOUT_S:g}")
    return value


class EngineWorker:
    """One child process running durable-rules."""

    def __init__(self) -> None:
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        ctx = mp.get_context(method)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.conn, os.getpid()), daemon=True,
                                name="vllm-planner-rules-engine")
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.is_alive()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def _died(self, stage: str) -> RuleEngineError:
        self.proc.join(timeout=1)
        code = self.proc.exitcode
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        elif code is not None:
            how = f"exited with status {code}"
        else:
            how = "stopped answering"
        return RuleEngineError(f"the rules engine (durable_rules) {how} while evaluating the {stage} stage; "
                               f"{_WORKAROUND}")

    def evaluate(self, rules: tuple[CRule, ...], facts: list[dict[str, Any]], timeout_s: float) -> list[Firing]:
        stage = rules[0].stage if rules else "?"
        try:
            self.conn.send((rules, facts))
        except (BrokenPipeError, OSError):
            raise self._died(stage) from None
        if not self.conn.poll(timeout_s):
            self.stop()
            raise RuleEngineError(f"the rules engine (durable_rules) did not answer within {timeout_s:g} s while "
                                  f"evaluating the {stage} stage, and was stopped; {_WORKAROUND}")
        try:
            status, payload = self.conn.recv()
        except (EOFError, OSError):
            raise self._died(stage) from None
        if status == "error":
            raise RuleEngineError(payload)
        return payload


_WORKER: EngineWorker | None = None


def evaluate(rules: tuple[CRule, ...], facts: list[dict[str, Any]]) -> list[Firing]:
    """Evaluate one stage in the worker (started on first use, restarted after a crash or hang)."""
    global _WORKER
    if not rules:
        return []
    timeout = _timeout()
    if _WORKER is None or not _WORKER.alive():
        if _WORKER is not None:
            _WORKER.stop()
        _WORKER = EngineWorker()
    try:
        return _WORKER.evaluate(rules, facts, timeout)
    except RuleEngineError:
        if _WORKER is not None and not _WORKER.alive():
            _WORKER.stop()
            _WORKER = None
        raise


def current_worker() -> EngineWorker | None:
    """The running worker, if any (for tests and diagnostics)."""
    return _WORKER


def shutdown() -> None:
    """Stop the worker now (the CLI calls this when a signal ends the run)."""
    global _WORKER
    if _WORKER is not None:
        _WORKER.stop()
        _WORKER = None
