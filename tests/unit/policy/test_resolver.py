"""Resolver precedence is independent of firing order."""

from __future__ import annotations

import itertools

from planner.policy.resolver import Proposal, render_text, resolve


def prop(rule: str, value: object, layer: str = "vendor", priority: int = 500, order: int = 0) -> Proposal:
    return Proposal(key="kv_cache_dtype", value=value, rule=rule, layer=layer, priority=priority, order=order,
                    reason="r")


def test_precedence_layers_priority_order_id() -> None:
    """site > vendor, then priority, then later pack, then rule id; any input order gives the same winner."""
    proposals = [prop("rec.a", "auto", priority=100), prop("rec.b", "fp8", priority=600),
                 prop("site.c", "fp8_e5m2", layer="site", priority=10, order=1), prop("rec.d", "x", priority=600)]
    winners = {resolve(list(p))["kv_cache_dtype"].by for p in itertools.permutations(proposals)}
    assert winners == {"site.c"}
    d = resolve(proposals)["kv_cache_dtype"]
    whys = {s["rule"]: s["why"] for s in d.superseded}
    assert whys["rec.b"] == "site layer beats vendor layer"
    no_site = resolve(proposals[:2] + proposals[3:])["kv_cache_dtype"]
    assert no_site.by == "rec.b"  # same priority as rec.d: smaller rule id wins
    assert {s["rule"]: s["why"] for s in no_site.superseded}["rec.a"] == "lower priority (100 < 600)"


def test_pinned_beats_every_rule() -> None:
    d = resolve([prop("site.c", "fp8", layer="site", priority=1000)], {"kv_cache_dtype": "auto"})["kv_cache_dtype"]
    assert d.value == "auto" and d.by == "user"
    assert d.superseded[0]["rule"] == "site.c"


def test_render_text_formats_and_keeps_unknown() -> None:
    out = render_text("p {cand.kv_pressure:.0%} t {param.x} u {nope.y}", {"cand": {"kv_pressure": 0.724}},
                      {"x": 0.6})
    assert out == "p 72% t 0.6 u {nope.y}"
