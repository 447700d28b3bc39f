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
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from planner.errors import RuleEngineError
from planner.policy.compiler import CRule
from planner.policy.reference import Firing

DEFAULT_TIMEOUT_S = 10.0
_WORKAROUND = "set VLLM_PLANNER_EVALUATOR=reference to evaluate rule packs without durable_rules"


def _serve(conn: Connection) -> None:
    """Child loop: evaluate requests until the pipe closes."""
    from planner.policy import engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    while True:
        try:
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
        raise RuleEngineError(f"$VLLM_PLANNER_ENGINE_TIMEOUT={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise RuleEngineError(f"$VLLM_PLANNER_ENGINE_TIMEOUT={raw!r} must be positive")
    return value


class EngineWorker:
    """One child process running durable-rules."""

    def __init__(self) -> None:
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        ctx = mp.get_context(method)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="vllm-planner-rules-engine")
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
