"""A small YAML writer for deployment manifests that every YAML 1.1 and 1.2 reader reads the same way.

docker-compose and Kubernetes parse with YAML 1.1 rules, where a plain `yes`, `on` or `0.33` is not a
string; so every string is written double-quoted (JSON escaping is valid YAML), keys are quoted
unless they are plainly safe, and the layout is block style. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*\Z")
_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _quote(s: str) -> str:
    """A double-quoted YAML scalar: JSON escaping, with anything YAML may not hold raw written as \\x/\\u/\\U."""
    body = json.dumps(s, ensure_ascii=False)[1:-1]
    out = []
    for ch in body:
        cp = ord(ch)
        printable = cp in (0x09, 0x0A, 0x0D) or 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xD7FF or \
            0xE000 <= cp <= 0xFFFD or 0x10000 <= cp <= 0x10FFFF
        if printable and cp != 0xFEFF:
            out.append(ch)
        else:
            out.append(f"\\x{cp:02x}" if cp <= 0xFF else f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}")
    return '"' + "".join(out) + '"'


def _key(k: Any) -> str:
    s = str(k)
    return s if _PLAIN_KEY.match(s) and s.lower() not in _YAML11_WORDS else _quote(s)


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    return _quote(str(v))


def _emit(v: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(v, dict):
        for k, item in v.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{_key(k)}:")
                _emit(item, indent + 2, out)
            else:
                out.append(f"{pad}{_key(k)}: {_inline(item)}")
    elif isinstance(v, list):
        for item in v:
            if isinstance(item, (dict, list)) and item:
                sub: list[str] = []
                _emit(item, indent + 2, sub)
                first = sub[0][indent + 2:]
                out.append(f"{pad}- {first}")
                out.extend(sub[1:])
            else:
                out.append(f"{pad}- {_inline(item)}")
    else:
        out.append(pad + _scalar(v))


def _inline(v: Any) -> str:
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return _scalar(v)


def to_yaml(data: dict[str, Any], *, comments: list[str] | None = None) -> str:
    """`data` as block YAML, preceded by `# comment` lines."""
    out = [f"# {c}".rstrip() for c in (comments or [])]
    _emit(data, 0, out)
    return "\n".join(out) + "\n"
