"""`did you mean: X, Y?` for a name the catalogs do not hold, and the near misses of a model id. Pure: no I/O."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_SUGGESTIONS = 3
MAX_QUERY_CHARS = 200  # longer names get no suggestion: difflib is quadratic in the length, and no id is this long


def closest(query: str, choices: Iterable[tuple[str, str, str]], *, n: int = MAX_SUGGESTIONS,
            cutoff: float = 0.6) -> list[str]:
    """Up to `n` displays of the entries whose match key is closest to `query`, best first.

    `choices` are (match key, entry, display) triples: an entry (a catalog id) may have several keys
    (its names and aliases) and is suggested once, as the display of its closest key. Keys are
    compared as given; callers lower-case or normalise the query and the keys alike.
    """
    if len(query) > MAX_QUERY_CHARS:
        return []
    by_key: dict[str, list[tuple[str, str]]] = {}
    for key, entry, display in choices:
        by_key.setdefault(key, []).append((entry, display))
    seen: set[str] = set()
    out: list[str] = []
    for key in difflib.get_close_matches(query, list(by_key), n=len(by_key), cutoff=cutoff):
        for entry, display in by_key[key]:
            if entry not in seen:
                seen.add(entry)
                out.append(display)
    return out[:n]


def did_you_mean(names: list[str]) -> str:
    """'; did you mean: X, Y?' to end an error message, or '' when nothing is close."""
    return f"; did you mean: {', '.join(names)}?" if names else ""


# --------------------------------------------------------------------------- model ids

# Words that mark a fine-tune or packaging of the same network (an instruct/base pair shares the architecture).
VARIANT_WORDS = frozenset({"instruct", "chat", "it", "base", "hf", "pt", "thinking", "reasoning"})
# Words that mark a quantized checkpoint of a network.
QUANT_WORDS = frozenset({"fp8", "fp4", "nvfp4", "mxfp4", "awq", "gptq", "int4", "int8", "w4a16", "w8a8", "w8a16",
                         "bnb", "4bit", "8bit", "gguf", "dynamic"})
_SIZE = re.compile(r"^(?:\d+(?:\.\d+)?[bm]|\d+x\d+(?:\.\d+)?b|a\d+(?:\.\d+)?b|e\d+(?:\.\d+)?b|\d+e)$")
_SPLIT = re.compile(r"[-_\s/]+")


@dataclass(frozen=True)
class ModelName:
    """A hub id read as words: family (before the first size), sizes, variant and quantization words."""

    org: str
    words: tuple[str, ...]
    core: tuple[str, ...]  # every word but the variant and quantization ones
    family: tuple[str, ...]
    sizes: tuple[str, ...]
    quant: tuple[str, ...]

    @property
    def size(self) -> float | None:
        """The first size in parameters (8x7b counts 56e9), for ordering a family by closeness."""
        for s in self.sizes:
            m = re.fullmatch(r"(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])", s)
            if m:
                return float(m.group(2)) * int(m.group(1) or 1) * (1e9 if m.group(3) == "b" else 1e6)
        return None


def parse_model_name(model_id: str) -> ModelName:
    """`meta-llama/Llama-3.1-405B-Instruct` -> family (llama, 3.1), sizes (405b,), variant instruct. A leading
    `Meta-` before `Llama` (the 2024 repo names) is dropped."""
    org, _, name = model_id.strip().lower().rpartition("/")
    words = tuple(w for w in _SPLIT.split(name) if w)
    if len(words) > 1 and words[0] == "meta" and words[1].startswith("llama"):
        words = words[1:]
    core = tuple(w for w in words if w not in VARIANT_WORDS and w not in QUANT_WORDS)
    first = next((i for i, w in enumerate(core) if _SIZE.match(w)), len(core))
    return ModelName(org=org, words=words, core=core, family=core[:first],
                     sizes=tuple(w for w in core if _SIZE.match(w)), quant=tuple(w for w in words if w in QUANT_WORDS))


@dataclass(frozen=True)
class NearMiss:
    """A catalog id suggested for a model id, and how it relates (None: only the spelling is close)."""

    id: str
    why: str | None = None

    def __str__(self) -> str:
        return f"{self.id} ({self.why})" if self.why else self.id


def _same_words(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Word for word the same name up to typos: numbers exact, other words a difflib ratio >= 0.8 apart."""
    if len(a) != len(b):
        return False
    return all(x == y or (not any(ch.isdigit() for ch in x + y)
                          and difflib.SequenceMatcher(None, x, y).ratio() >= 0.8) for x, y in zip(a, b, strict=True))


def rank_model_ids(query: str, candidates: Iterable[tuple[str, str, str | None]], *, n: int = MAX_SUGGESTIONS,
                   cutoff: float = 0.6) -> list[NearMiss]:
    """The catalog ids closest to the model id `query`, best first, each at most once per bundled config.

    `candidates` are (id, config id, quantization method or None); an alias's config id is its target's, so an
    alias and its target are never both suggested. Ranking: the same network as an instruct/base pair (same
    words but the variant ones: "same architecture"), then the same family and size, then the same family (the
    closest size first), then ids whose spelling is close (difflib ratio >= `cutoff`); ties by spelling.
    """
    if len(query) > MAX_QUERY_CHARS:
        return []
    q_text = query.strip().lower()
    q = parse_model_name(q_text)
    scored: list[tuple[tuple[float, ...], NearMiss, str]] = []
    for cid, config_id, method in candidates:
        c = parse_model_name(cid)
        text = cid.lower()
        ratio = max(difflib.SequenceMatcher(None, q_text, text).ratio(),
                    difflib.SequenceMatcher(None, q_text.rpartition("/")[2], text.rpartition("/")[2]).ratio())
        why: str | None = None
        if _same_words(q.words, c.words):
            tier = 0.0  # the same name, misspelt or under another org (or without one)
        elif q.core and q.core == c.core:
            tier, why = 1.0, "same architecture"
            if q.quant and not (c.quant or method):
                why += "; unquantized"
            elif c.quant and c.quant != q.quant:  # a quantized re-release (org/name-FP8) in another format
                why += f"; {'-'.join(c.quant).upper()} checkpoint"
        elif q.family and q.family == c.family and q.sizes and q.sizes == c.sizes:
            tier, why = 2.0, "same family and size"
        elif q.family and q.family == c.family:
            tier, why = 3.0, "same family"
        elif ratio >= cutoff:
            tier = 4.0
        else:
            continue
        distance = abs(math.log(q.size / c.size)) if tier == 3.0 and q.size and c.size else 0.0
        scored.append(((tier, distance, -ratio), NearMiss(cid, why), config_id))
    out: list[NearMiss] = []
    seen: set[str] = set()
    for _key, miss, config_id in sorted(scored, key=lambda s: s[0]):
        if config_id.lower() not in seen:
            seen.add(config_id.lower())
            out.append(miss)
    return out[:n]
