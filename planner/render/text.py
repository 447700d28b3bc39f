"""The one sanitiser for text shown on a terminal.

Every console line the planner prints is built from fixed text written here in the code plus values that
came from inputs: model ids and directory names, GPU and process names from nvidia-smi captures, vLLM log
fields, rule-pack messages and reasons, file paths. Those values are untrusted. Each one goes through
this module once, where it is interpolated:

* :func:`strip_controls` (also :func:`plain`, for plain-text lines such as ``click.echo`` output) removes
  terminal escape sequences and control characters, so no input can move the cursor, clear the screen,
  retitle the window, hide a line or write a hyperlink;
* :func:`safe` does that and then escapes rich markup, so `[/]` or `[black on black]` in an input is shown
  as those characters: it cannot raise MarkupError or restyle (or hide) the report around it;
* :func:`cell` makes a rich table cell that is never parsed as markup.

JSON and the generated artifacts are data, not terminal text: they are not sanitised (JSON escapes control
characters itself). CSV, which escapes nothing, goes through :func:`plain` field by field (planner/cli.py).
"""

from __future__ import annotations

import re
from typing import Any

import click
from rich.markup import escape
from rich.text import Text

# Escape sequences are removed whole: CSI (ESC [ or the 8-bit 0x9b) with its parameters and final byte;
# the string sequences OSC, DCS, SOS, PM and APC (ESC ] P X ^ _ or 8-bit 0x9d 0x90 0x98 0x9e 0x9f) up to
# and with their terminator (BEL, ESC \ or 0x9c); then any other ESC with the character after it. A string
# sequence without its terminator loses only its introducer: what follows stays visible. Then the single
# controls left go: C0 except tab and newline, DEL and C1.
_ESC_SEQ = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
                      r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
                      r"|\x1b[\x20-\x7e]?")
# C0 (tab and newline kept), DEL, C1, and the Unicode bidirectional overrides and isolates (U+202A-202E,
# U+2066-2069), which reorder what a terminal shows ("Trojan Source") without being control characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_controls(value: Any) -> str:
    """`str(value)` without terminal escape sequences and control characters (newline and tab kept)."""
    return _CONTROL.sub("", _ESC_SEQ.sub("", str(value)))


def plain(value: Any) -> str:
    """An input value made safe to print as plain text (no markup involved): :func:`strip_controls`."""
    return strip_controls(value)


def safe(value: Any) -> str:
    """An input value made safe to interpolate into rich markup: stripped, then markup-escaped."""
    return escape(strip_controls(value))


def cell(value: Any) -> Text:
    """A rich table cell shown as is: stripped, and never parsed as markup or emoji."""
    return Text(strip_controls(value))


def echo(line: str = "", *, err: bool = False) -> None:
    """Print one plain-text line (values in it already through :func:`plain`); the whole line is stripped
    again on its way out, so nothing a caller forgot to pass through :func:`plain` reaches the terminal."""
    click.echo(strip_controls(line), err=err)
