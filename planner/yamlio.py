"""The one ruamel.yaml user: safe loading with line numbers, bounded size and aliases.

Loading is safe (no tags that construct Python objects). Alias expansion is bounded so that
"billion laughs" style documents fail fast instead of eating memory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import stat
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
    if _text_depth(text) > MAX_TEXT_DEPTH:
        raise YamlError(f"{source}: nested deeper than {MAX_TEXT_DEPTH} levels; refusing to parse")
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


MAX_TEXT_DEPTH = 64  # as shape_problem's max_depth: checked on the text first, so ruamel never recurses deep


def _text_depth(text: str) -> int:
    """How deep the YAML text nests, read off the text in one pass before any parser sees it: flow brackets
    (`[`, `{`) outside quotes and comments, plus block indentation levels (each deeper indent, and each `- `
    item marker, opens one). A 5,000-deep document used to cost ruamel seconds of recursion before failing;
    this refuses it at once. It may overcount (a bracket inside a plain scalar) but never undercounts nesting
    that the parser would follow."""
    deepest = depth = 0  # flow depth carries over lines (a flow collection may span many)
    indents: list[int] = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        while stripped.startswith("- "):  # "- - x" nests twice at one indentation
            indent += 2
            stripped = stripped[2:].lstrip(" ")
        while indents and indents[-1] >= indent:
            indents.pop()
        indents.append(indent)
        flow = depth
        quote = ""
        for i, ch in enumerate(stripped):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and (i == 0 or stripped[i - 1] in " \t"):
                break
            elif ch in "[{":
                depth += 1
                flow = max(flow, depth)
            elif ch in "]}":
                depth = max(0, depth - 1)
        deepest = max(deepest, len(indents) + flow)
    return deepest


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


# --- the parsed-YAML cache ------------------------------------------------------------------------------------
#
# Fast-path parses are memoised on disk, one file per source text: `yaml-<sha256 of the text>.json` in a
# private directory ($VLLM_PLANNER_CACHE_DIR, else $XDG_CACHE_HOME/vllm-planner, else ~/.cache/vllm-planner).
# An entry is one header line and the payload:
#
#     {"format": "vllm-planner-yaml-cache/2", "payload_sha256": "<hex>", "source_sha256": "<hex>"}\n
#     <the parsed document as JSON>
#
# It is used only when every check holds, and any anomaly is a miss (the YAML is parsed again and the entry
# rewritten), never an error: the directory is a directory owned by this user that neither group nor others
# may write (else the cache is off for the run); the entry is a regular file owned by this user, opened
# without following a symlink and without blocking (a FIFO is refused after open, never read), at most
# MAX_CACHE_ENTRY_BYTES; the header names this format and the sha256 of the very text being parsed; the
# payload's sha256 matches; the payload decodes (any exception, a RecursionError from deep nesting included,
# is a miss) to a document nested no deeper than load_yaml_text allows. A verified entry therefore holds
# exactly what parsing the text gives, so whatever error follows is about the YAML itself.
# Writes go to a temp file with an unpredictable name, created O_CREAT|O_EXCL|O_NOFOLLOW with mode 0600 in
# that directory (by descriptor), then renamed over the entry (a rename replaces a symlink planted there, it
# never writes through it).
# JSON, unlike pickle, cannot run code when read back.

CACHE_FORMAT = "vllm-planner-yaml-cache/2"
MAX_CACHE_ENTRY_BYTES = 4 * MAX_YAML_BYTES
_MAX_HEADER_BYTES = 512
_MAX_DEPTH = 64  # shape_problem's default bound: load_yaml_text let nothing deeper through
_CACHE_OK = all(hasattr(os, f) for f in ("O_NOFOLLOW", "O_DIRECTORY", "O_NONBLOCK", "geteuid")) and all(
    f in os.supports_dir_fd for f in (os.open, os.rename, os.unlink))


class _CacheMissError(Exception):
    """The entry cannot be used (absent, odd, foreign, edited, stale): parse the YAML."""


def _cache_dir() -> Path | None:
    """Where the cache lives (None: VLLM_PLANNER_NO_CACHE is set). _open_cache_dir decides whether it is used."""
    if os.environ.get("VLLM_PLANNER_NO_CACHE"):
        return None
    base = os.environ.get("VLLM_PLANNER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vllm-planner")
    return Path(base)


def _open_cache_dir() -> int | None:
    """A descriptor of the cache directory (created 0700 when missing), or None when the cache is off for this
    run: disabled, unsupported here, not creatable, not a directory, not owned by this user, or writable by
    group or others (another user could plant or swap entries there). Silent: a plan never depends on it."""
    directory = _cache_dir()
    if directory is None or not _CACHE_OK:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)  # what was opened: a swap of the path afterwards does not matter, we work by descriptor
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _entry_bytes(source_sha: str, payload: bytes) -> bytes:
    """A cache entry: the header line binding `payload` to the source text's sha256, then `payload`."""
    header = {"format": CACHE_FORMAT, "payload_sha256": hashlib.sha256(payload).hexdigest(),
              "source_sha256": source_sha}
    return json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def _read_entry(dfd: int, name: str, source_sha: str) -> Any:
    """The verified document in entry `name`, or _CacheMissError."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        raise _CacheMissError from None  # absent, or a symlink (ELOOP)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > MAX_CACHE_ENTRY_BYTES:
            raise _CacheMissError
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, MAX_CACHE_ENTRY_BYTES + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_CACHE_ENTRY_BYTES:  # grew since fstat
                raise _CacheMissError
    finally:
        os.close(fd)
    blob = b"".join(chunks)
    header, newline, payload = blob.partition(b"\n")
    if not newline or len(header) > _MAX_HEADER_BYTES:
        raise _CacheMissError
    meta = json.loads(header)
    if not (isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT and meta.get("source_sha256") == source_sha
            and meta.get("payload_sha256") == hashlib.sha256(payload).hexdigest()):
        raise _CacheMissError
    data = json.loads(payload)  # nesting deeper than the recursion limit raises RecursionError: a miss
    if _too_deep(data, _MAX_DEPTH):
        raise _CacheMissError
    return data


def _too_deep(doc: Any, max_depth: int) -> bool:
    """Whether decoded JSON nests deeper than `max_depth` (iterative, and cheaper than shape_problem: JSON
    has no aliases, so there is nothing shared or recursive to look for)."""
    stack = [(doc, 0)] if isinstance(doc, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > max_depth:
                    return True
                stack.append((child, depth + 1))
    return False


def _write_entry(dfd: int, name: str, source_sha: str, data: Any) -> None:
    """Store `data` under `name` if it survives a JSON round trip unchanged (else nothing is cached)."""
    import secrets

    payload = json.dumps(data, separators=(",", ":")).encode()
    if len(payload) > MAX_CACHE_ENTRY_BYTES - _MAX_HEADER_BYTES or json.loads(payload) != data:
        return
    blob = _entry_bytes(source_sha, payload)
    tmp = f".yaml-{secrets.token_hex(16)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    try:
        try:
            view, done = memoryview(blob), 0
            while done < len(blob):
                n = os.write(fd, view[done:])
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                done += n
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise


def _cached_parse(text: str, source: str) -> Any:
    """Fast-path parse of `text`, memoised in the private, verified on-disk cache described above."""
    dfd = _open_cache_dir()
    if dfd is None:
        return load_yaml_text(text, source, fast=True)
    try:
        source_sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        name = f"yaml-{source_sha}.json"
        try:
            return _read_entry(dfd, name, source_sha)
        except Exception:  # noqa: BLE001 - any anomaly in an entry (I/O, JSON, depth, memory) is a miss
            pass
        data = load_yaml_text(text, source, fast=True)
        with contextlib.suppress(Exception):  # the cache is an optimisation: never fail a plan over it
            _write_entry(dfd, name, source_sha, data)
        return data
    finally:
        os.close(dfd)


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
