"""Pack messages are rendered by lookup only, with bounded format widths and length."""

from __future__ import annotations

from planner.policy.resolver import MAX_MESSAGE_CHARS, render_text


def test_placeholders_render_by_lookup_only() -> None:
    bindings = {"cand": {"kv_pressure": 0.5, "name": "x"}}
    assert render_text("{cand.kv_pressure:.0%} {param.t:>6}", bindings, {"t": 3}) == "50%      3"
    assert render_text("{cand.__class__} {cand.name.upper} {x.y}", bindings, {}) == \
        "{cand.__class__} {cand.name.upper} {x.y}"  # no attribute access, unknown names stay as written


def test_widths_and_lengths_are_bounded() -> None:
    bindings = {"g": {"name": "H100"}}
    assert render_text("{g.name:>999999999}", bindings, {}) == "H100"  # a 4-digit width is refused
    long = render_text("{g.name:>999}" * 50, bindings, {})
    assert len(long) == MAX_MESSAGE_CHARS and long.endswith("…")
