"""A crash or hang of the C engine becomes a clean RuleEngineError, and the next evaluation recovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from planner.errors import RuleEngineError
from planner.policy import engine, worker
from planner.policy.compiler import compile_rules
from planner.policy.facts import normalise_fact
from planner.policy.loader import load_packset

pytestmark = pytest.mark.skipif(not engine.available(), reason="durable_rules not installed (Python 3.13+)")

PACKSET = load_packset(use_env=False)
RULES = compile_rules(PACKSET.rules, "sizing", PACKSET.param_values())
FACTS = [normalise_fact("candidate", "c", {"weights_fraction": 0.99})]
ROOT = Path(__file__).resolve().parents[3]


def _fresh() -> worker.EngineWorker:
    assert len(worker.evaluate(RULES, FACTS)) == 1
    w = worker.current_worker()
    assert w is not None and w.alive()
    return w


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_dead_engine_is_a_clean_error_then_recovers(sig: signal.Signals) -> None:
    """Kill the engine process (as a segfault would end it): one error naming the signal, then a new worker."""
    w = _fresh()
    os.kill(w.pid, sig)
    w.proc.join(timeout=5)
    with pytest.raises(RuleEngineError, match=f"killed by {sig.name} while evaluating the sizing stage"):
        w.evaluate(RULES, FACTS, timeout_s=5)
    assert len(worker.evaluate(RULES, FACTS)) == 1  # a fresh worker answers
    assert worker.current_worker() is not w


def test_hung_engine_times_out_then_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped (silent) engine: the parent gives up after the timeout and kills it."""
    w = _fresh()
    os.kill(w.pid, signal.SIGSTOP)
    monkeypatch.setenv("VLLM_PLANNER_ENGINE_TIMEOUT", "0.3")
    with pytest.raises(RuleEngineError, match=r"did not answer within 0\.3 s"):
        worker.evaluate(RULES, FACTS)
    assert not w.alive()
    monkeypatch.delenv("VLLM_PLANNER_ENGINE_TIMEOUT")
    assert len(worker.evaluate(RULES, FACTS)) == 1


def test_cli_engine_failure_is_exit_1_one_line() -> None:
    """End to end: an engine that cannot answer in time gives exit 1 and one `error:` line."""
    env = {**os.environ, "VLLM_PLANNER_ENGINE_TIMEOUT": "0.000001", "VLLM_PLANNER_EVALUATOR": "durable"}
    r = subprocess.run([sys.executable, "-m", "planner.cli", "plan", "--model", "meta-llama/Llama-3.1-8B-Instruct",
                        "--gpu", "H100"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert r.returncode == 1, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the rules engine (durable_rules) did not answer")
    assert "Traceback" not in r.stderr


def test_exception_inside_an_action_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """durable-rules stores an action's exception in its state and returns normally; the adapter raises."""
    assert len(engine.evaluate(RULES, FACTS)) == 1  # registered and working in this process

    def boom(*_: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(engine, "_record", boom)  # the recording action now raises inside the engine
    with pytest.raises(RuleEngineError, match=r"action failed.*boom"):
        engine.evaluate(RULES, FACTS)
