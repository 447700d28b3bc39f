"""The one ruamel.yaml user: safe loading with line numbers, bounded size and aliases.

Loading is safe (no tags that construct Python objects). Alias expansion is bounded so that
"billion laughs" style documents fail fast instead of eating memory.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from planner.errors import InputError

MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_ALIASES = 100


class YamlError(InputError):
    """A YAML file could not be read or parsed."""


def _yaml(fast: bool = False) -> Any:
    """The round-trip loader keeps line numbers and comments; the fast one is ruamel's safe loader
    (libyaml-based when ruamel.yaml.clib is installed). Neither constructs arbitrary objects."""
    from ruamel.yaml import YAML

    y = YAML(typ="safe") if fast else YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def _count_aliases(text: str) -> int:
    # A cheap upper bound: every alias use is "*name" outside of quoted scalars. False positives
    # only make us stricter, which is fine for config files.
    import re

    return len(re.findall(r"(?:^|[\s\[\{,:-])\*[A-Za-z0-9_-]+", text))


def load_yaml_text(text: str, source: str, *, fast: bool = False) -> Any:
    """Parse YAML text; errors name `source` and the line. `fast` skips line/comment tracking."""
    if len(text.encode("utf-8", "replace")) > MAX_YAML_BYTES:
        raise YamlError(f"{source}: file is larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB; refusing to parse")
    if _count_aliases(text) > MAX_ALIASES:
        raise YamlError(f"{source}: more than {MAX_ALIASES} YAML aliases; refusing to expand")
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return _yaml(fast).load(io.StringIO(text))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise YamlError(f"{source}{line}: invalid YAML: {problem}") from None
    except YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid YAML"
        raise YamlError(f"{source}: invalid YAML: {first}") from None


def load_yaml_file(path: Path, *, fast: bool = False) -> Any:
    """Read and parse a YAML file; errors name the file."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise YamlError(f"{path}: file is larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB; refusing to parse")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise YamlError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise YamlError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise YamlError(f"{path}: cannot read: {e.strerror}") from None
    return load_yaml_text(text, str(path), fast=fast)


def line_of(node: Any, key: Any = None) -> int | None:
    """1-based line of a mapping key (or of the node itself) in a round-trip-loaded document."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None:
            return int(lc.key(key)[0]) + 1
        return int(lc.line) + 1
    except (KeyError, TypeError, IndexError, AttributeError):
        return None


def to_plain(node: Any) -> Any:
    """Convert ruamel containers and scalars to plain dict/list/str/int/float/bool/None."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def dump_yaml(data: Any) -> str:
    """Dump plain or round-trip data to a YAML string (comments kept for round-trip data)."""
    out = io.StringIO()
    y = _yaml()
    y.default_flow_style = False
    y.dump(data, out)
    return out.getvalue()
