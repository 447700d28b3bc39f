"""vLLM's `serve` parser, replayed from its argparse dump (tests/data/vllm-flags, copies of shared/vllm-flags).

Independent of the planner's own flag table: this walks a command the way argparse would.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

DUMPS = Path(__file__).resolve().parent / "data" / "vllm-flags"


@cache
def _options(version: str) -> dict[str, Any]:
    return json.loads((DUMPS / f"{version}.json").read_text())["options"]



def assert_vllm_accepts(argv: list[str], version: str) -> None:
    """Walk `vllm serve MODEL flags...` the way argparse would, with the dumped option table of `version`."""
    opts = _options(version)
    assert argv[:2] == ["vllm", "serve"], argv
    assert not argv[2].startswith("-"), "the model comes first"
    i = 3
    seen: set[str] = set()
    while i < len(argv):
        name, eq, inline = argv[i].partition("=")
        assert name in opts, f"vLLM {version} has no {name}"
        o = opts[name]
        assert not o["deprecated"], f"{name} is deprecated in vLLM {version}: {o['deprecation_note']}"
        assert o["dest"] not in seen, f"{name} given twice"
        seen.add(o["dest"])
        if o["nargs"] == 0:
            assert not eq, f"{name} takes no value"
            i += 1
            continue
        value = inline if eq else argv[i + 1]
        i += 1 if eq else 2
        kind = (o["type"] or "str").removeprefix("optional[").rstrip("]")
        if kind == "int":
            int(value)
        elif kind == "float":
            float(value)
        elif kind == "human_readable_int":
            assert re.fullmatch(r"\d+[kKmMgG]?", value), (name, value)
        allowed = o["choices"] if o["choices"] is not None else (o["metavar"] if isinstance(o["metavar"], list)
                                                                 else None)
        if allowed is not None:
            assert value in [str(a) for a in allowed], f"{name} {value}: vLLM {version} accepts {allowed}"


