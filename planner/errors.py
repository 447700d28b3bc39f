"""Exceptions factored out so every layer can raise them without import loops.

Tree (the class carries the CLI exit code, click-style):

    PlannerError            exit 1  a bug or an engine fault
    ├── RuleEngineError     exit 1  the rules engine crashed or misbehaved
    └── InputError          exit 2  bad value, unknown model/GPU, unreadable or malformed file
        ├── ModelConfigError        config.json missing/malformed
        ├── GpuError                unknown GPU name, bad catalog entry
        ├── SmiError                nvidia-smi failed or its output cannot be parsed
        └── PackError               a rule pack is invalid ("<file>:<line>: <where>: <message>")

Infeasible plans are not errors: the CLI prints the plan and exits 3.

Outside the tree: an OSError naming a file (or with a file-fault errno such as ENOSPC) that escapes
a command is the environment's fault, not a bug: the CLI reports `error: <file>: <reason>`, exit 2.
`Interrupted` (a BaseException, so that `except Exception` cannot swallow it) is raised for SIGINT
and SIGTERM so that cleanups run; the CLI exits 128 + the signal number (130, 143).
"""

from __future__ import annotations

import signal
from typing import ClassVar


class PlannerError(Exception):
    """Base class; anything else escaping to the CLI is a bug (exit 1)."""

    exit_code: ClassVar[int] = 1


class RuleEngineError(PlannerError):
    """The rules engine failed while evaluating valid packs."""


class InputError(PlannerError):
    """The user's input (a flag, a file, a name) is wrong; the message says which and why."""

    exit_code: ClassVar[int] = 2


class ModelConfigError(InputError):
    """A model's config.json (or its companions) is missing, unreadable or malformed."""


class GpuError(InputError):
    """An unknown GPU name, an ambiguous alias, or an invalid catalog entry."""


class SmiError(InputError):
    """nvidia-smi reported a failure, or its output could not be parsed."""


class PackError(InputError):
    """A rule pack (or pack test file) is invalid."""


class PackProblemsError(PackError):
    """Several problems in rule packs: the message is the first; `problems` holds them all (for lint).

    When one pack file is at fault, `partial` is the pack built from what did parse and `broken`
    names what did not ("rule:ID", "param:NAME"), so that `rules lint` can go on to check the rest
    across packs without reporting the consequences of the problems it already listed.
    """

    def __init__(self, problems: list[str], *, partial: object = None, broken: frozenset[str] = frozenset()) -> None:
        self.problems = problems
        self.partial = partial
        self.broken = broken
        more = f" (and {len(problems) - 1} more; run `vllm-planner rules lint`)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class Interrupted(BaseException):
    """A signal ended the run (SIGINT: Ctrl-C, SIGTERM: `kill`, systemd, a caller's timeout)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__("interrupted" if signum == signal.SIGINT else "terminated")
