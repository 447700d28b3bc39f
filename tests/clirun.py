"""Running the CLI in-process, and the one-line error contract every bad input must meet."""

from __future__ import annotations

from click.testing import CliRunner

from planner.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `vllm-planner ARGS`."""
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def one_error_line(err: str) -> str:
    """The single `error: ...` line of stderr (and no traceback)."""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]
