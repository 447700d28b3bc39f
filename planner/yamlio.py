"""The one ruamel.yaml user: safe loading with line numbers, bounded size and aliases.

Loading is safe (no tags that construct Python objects). Alias expansion is bounded so that
"billion laughs" style documents fail fast instead of eating memory.
"""

from __future__ import annotations

import io
import os
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
        doc = _yaml(fast).load(io.StringIO(text))
    except RecursionError:
        raise YamlError(f"{source}: nested too deeply to parse") from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise YamlError(f"{source}{line}: invalid YAML: {problem}") from None
    except YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid YAML"
        raise YamlError(f"{source}: invalid YAML: {first}") from None
    problem = shape_problem(doc)
    if problem:
        raise YamlError(f"{source}: {problem}; refusing to expand")
    return doc


def shape_problem(doc: Any, *, max_values: int = 1_000_000, max_depth: int = 64) -> str | None:
    """Why `doc` is unsafe to walk, or None: more than `max_values` values once aliases are expanded
    (an alias bomb), nesting deeper than `max_depth` (aliases included), or a structure that contains
    itself. Each shared node is measured once (its expanded size and height), so this is linear in
    the document even when its expansion is exponential."""
    measured: dict[int, tuple[int, int]] = {}  # id -> (values once expanded, height)
    open_: set[int] = set()

    class Stop(Exception):  # noqa: N818 - control flow, never escapes
        pass

    def measure(node: Any, depth: int) -> tuple[int, int]:
        if not isinstance(node, (dict, list)):
            return 1, 0
        key = id(node)
        if key in measured:
            size, height = measured[key]
        else:
            if depth > max_depth:
                raise Stop(f"nested deeper than {max_depth} levels")
            if key in open_:
                raise Stop("an alias refers to itself (a recursive structure)")
            open_.add(key)
            size, height = 1, 0
            for child in (list(node.keys()) + list(node.values())) if isinstance(node, dict) else node:
                s, h = measure(child, depth + 1)
                size, height = size + s, max(height, h + 1)
                if size > max_values:
                    raise Stop(f"aliases expand to more than {max_values:,} values")
            open_.discard(key)
            measured[key] = (size, height)
        if depth + height > max_depth:
            raise Stop(f"nested deeper than {max_depth} levels")
        return size, height

    try:
        measure(doc, 0)
    except Stop as e:
        return str(e)
    return None


def _cache_dir() -> Path | None:
    if os.environ.get("VLLM_PLANNER_NO_CACHE"):
        return None
    base = os.environ.get("VLLM_PLANNER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vllm-planner")
    return Path(base)


def _cached_parse(text: str, source: str) -> Any:
    """Fast-path parse, memoized on disk as JSON keyed by the text's sha256 (JSON, unlike pickle, cannot run
    code when read back). Only documents that survive a JSON round trip unchanged are cached."""
    import hashlib
    import json

    directory = _cache_dir()
    entry = directory / f"yaml-{hashlib.sha256(text.encode()).hexdigest()}.json" if directory else None
    if entry is not None:
        try:
            return json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    data = load_yaml_text(text, source, fast=True)
    if entry is not None:
        try:
            blob = json.dumps(data)
            if json.loads(blob) == data:
                entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = entry.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(blob, encoding="utf-8")
                os.replace(tmp, entry)
        except (OSError, TypeError, ValueError):
            pass  # the cache is an optimisation: never fail a plan over it
    return data


def load_yaml_file(path: Path, *, fast: bool = False) -> Any:
    """Read and parse a YAML file; errors name the file. `fast` files are cached by content hash."""
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
    return _cached_parse(text, str(path)) if fast else load_yaml_text(text, str(path))


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
