"""`vllm-planner capacity` as one self-contained HTML page: header, options table, frontier chart, memory bars.

The page is meant to be mailed or attached to a ticket and opened anywhere, so it fetches nothing (no
scripts, fonts, styles or images from the network) and needs no JavaScript: the chart and the bars are
inline SVG and CSS drawn here. Every value from the data is stripped of control characters and
HTML-escaped, since model and GPU names, rule reasons and warnings can come from untrusted input.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

from planner.render.capacity import (
    COLUMNS,
    cost_text,
    frontier,
    latency,
    layout_label,
    mark,
    money,
    num,
    ordered,
    slo_text,
)
from planner.render.text import strip_controls
from planner.units import GiB

# Characters HTML5 calls parse errors or that UTF-8 cannot encode (lone surrogates), beyond the controls.
_NOT_HTML = re.compile(r"[\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")

# (field of the option's memory, label, CSS colour) in stacking order; unused budget is computed.
MEMORY_PARTS = (("weights_bytes", "weights", "#4e79a7"), ("activation_peak_bytes", "activation peak", "#f28e2b"),
                ("non_torch_bytes", "non-torch", "#b07aa1"), ("cuda_graph_bytes", "CUDA graphs", "#76b7b2"),
                ("kv_cache_bytes", "KV cache", "#59a14f"))
UNUSED = ("unused budget", "#d9d9d9")

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.5em 0 .5em}
table.options{border-collapse:collapse;font-size:13px}
.options th,.options td{border:1px solid #ccc;padding:3px 6px;white-space:nowrap}
.options th{background:#f3f3f3}.options td.n{text-align:right;font-variant-numeric:tabular-nums}
.options tr.best td{background:#fffbe6}
.slo-yes{color:#1a7f37;font-weight:600}.slo-at-risk{color:#9a6700;font-weight:600}
.slo-no{color:#cf222e;font-weight:600}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
svg.chart{max-width:100%;height:auto;font:12px sans-serif}
.chart .opt{fill:#999}.chart .front{fill:#2e8b57}.chart polyline{fill:none;stroke:#2e8b57;stroke-width:2}
.chart .best{fill:#f0b400;stroke:#7a5c00}.chart .grid{stroke:#eee}.chart .axis{stroke:#333}
.membar{margin:.4em 0 .8em}.membar .label{font-size:13px}
.bar{display:flex;height:18px;width:100%;max-width:900px;background:#fff;border:1px solid #999}
.bar span{display:block;height:100%}
.legend span{display:inline-block;margin-right:1em}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}
.warn{color:#9a6700}.note{color:#555}
"""


def esc(value: Any) -> str:
    """Text and attribute-safe HTML for any value from the data."""
    return html.escape(_NOT_HTML.sub("", strip_controls(value)), quote=True)


def render_capacity_html(data: dict[str, Any]) -> str:
    """The whole page for the capacity JSON `data`, every option shown (the page has no `--all` limit)."""
    req = data.get("request") or {}
    opts = ordered(data)
    best = data.get("best")
    model = esc(req.get("model", "?"))
    body = [
        f"<h1>Capacity plan: {model}</h1>",
        f"<p>{req.get('rate', 0):,g} requests/s, {req.get('input_len', 0):,} tokens in / "
        f"{req.get('output_len', 0):,} out; {esc(slo_text(req.get('slo') or {}))}. "
        f"vLLM {esc(data.get('vllm_version', '?'))}, planner {esc(data.get('planner_version', '?'))}.</p>",
        _best(opts, best),
        _chart(data.get("options") or [], best),  # before the table: with hundreds of rows it would be far down
        _table(opts, best, (req.get("slo") or {}).get("percentile", 95)),
        _memory(opts, best),
        *(f'<p class="warn">warning {esc(w.get("code", ""))}: {esc(w.get("message", ""))}'
          + (f" ({esc(w['rule'])})" if w.get("rule") else "") + "</p>" for w in data.get("warnings") or []),
        *(f'<p class="note">note: {esc(n)}</p>' for n in data.get("notes") or []),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>Capacity plan: {model}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(b for b in body if b) + "\n</body>\n</html>\n")


def _best(opts: list[tuple[int, dict[str, Any]]], best: int | None) -> str:
    if not opts:
        return "<p><strong>No options</strong>: no catalog GPU and layout could be sized for this model.</p>"
    o = opts[0][1]
    reps, per = o.get("replicas", "?"), o.get("gpus_per_replica", "?")
    what = (f"{esc(o.get('total_gpus', '?'))} x {esc(o.get('gpu', '?'))} "
            f"({esc(reps)} replica{'s' if reps != 1 else ''} of {esc(per)} GPU{'s' if per != 1 else ''}, "
            f"{esc(layout_label(o.get('config') or {}))}), "
            f"{esc(cost_text(o))}, limited by {esc(o.get('limited_by', '?'))}")
    if best is None:
        v = esc(o.get("meets_slo", "no"))
        return (f"<p><strong>No option meets the SLOs.</strong> Closest (SLO <span class=\"slo-{v}\">{v}</span>): "
                f"{what}</p>")
    return f"<p><strong>Best:</strong> {what}</p>\n<pre><code>{esc(o.get('serve_command', ''))}</code></pre>"


def _table(opts: list[tuple[int, dict[str, Any]]], best: int | None, pct: Any) -> str:
    heads = ["", "GPU", "layout", *(re.sub(r"\n(?=/)|(?<=/)\n", "", c).replace("\n", " ").format(p=pct)
                                    for c, _ in COLUMNS)]
    rows = []
    for i, o in opts:
        per = o.get("per_replica") or {}
        util = per.get("utilization")
        v = esc(o.get("meets_slo", ""))
        cells = [(mark(i, o, best), ""), (o.get("gpu", "?"), ""), (layout_label(o.get("config") or {}), ""),
                 (o.get("gpus_per_replica", "-"), "n"), (o.get("replicas", "-"), "n"), (o.get("total_gpus", "-"), "n"),
                 (num(per.get("max_rate")), "n"), ("-" if util is None else f"{util * 100:.0f}%", "n"),
                 (latency(o.get("ttft_ms"), 0), "n"), (latency(o.get("itl_ms"), 1), "n"), (v, f"slo-{v}"),
                 (money(o.get("cost_per_hour")), "n"), (money(o.get("cost_per_million_output_tokens")), "n")]
        tds = "".join(f'<td class="{cls}">{esc(val)}</td>' if cls else f"<td>{esc(val)}</td>" for val, cls in cells)
        best_cls = ' class="best"' if i == best else ""
        rows.append(f'<tr{best_cls} data-key="{esc(o.get("key", ""))}">{tds}</tr>')
    th = "".join(f'<th scope="col">{esc(h)}</th>' for h in heads)
    return (f"<h2>Options ({len(opts)}; ★ best, ◆ Pareto)</h2>\n<table class=\"options\">\n<thead><tr>{th}</tr></thead>"
            "\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>")


def nice_ticks(hi: float, n: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 x 10^k) up to the first tick at or above `hi`."""
    raw = max(hi, 1e-9) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [k * step for k in range(math.ceil(max(hi, 1e-9) / step - 1e-9) + 1)]


def _tick(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:g}"


def _chart(options: list[dict[str, Any]], best: int | None) -> str:
    """SVG scatter: x tokens/s per user, y output tokens/s per GPU, from 0; frontier joined, best starred."""
    pts = [(i, float(o["tokens_per_s_per_user"]), float(o["output_tokens_per_s_per_gpu"]))
           for i, o in enumerate(options)
           if o.get("tokens_per_s_per_user") is not None and o.get("output_tokens_per_s_per_gpu") is not None]
    if not pts:
        return ""
    w, h, left, right, top, bottom = 720, 420, 80, 20, 30, 55
    xt, yt = nice_ticks(max(p[1] for p in pts) * 1.05), nice_ticks(max(p[2] for p in pts) * 1.05)

    def sx(x: float) -> float:
        return left + x / xt[-1] * (w - left - right)

    def sy(y: float) -> float:
        return h - bottom - y / yt[-1] * (h - top - bottom)

    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           'role="img" aria-labelledby="chart-title">',
           '<title id="chart-title">Options: output tokens/s per GPU against tokens/s per user; '
           'the Pareto frontier joined, the best option starred</title>']
    for x in xt:
        out.append(f'<line class="grid" x1="{sx(x):.1f}" y1="{top}" x2="{sx(x):.1f}" y2="{h - bottom}"/>'
                   f'<text x="{sx(x):.1f}" y="{h - bottom + 16}" text-anchor="middle">{_tick(x)}</text>')
    for y in yt:
        out.append(f'<line class="grid" x1="{left}" y1="{sy(y):.1f}" x2="{w - right}" y2="{sy(y):.1f}"/>'
                   f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{_tick(y)}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}"/>'
               f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}"/>')
    out.append(f'<text x="{(left + w - right) / 2:.0f}" y="{h - 12}" text-anchor="middle">tokens/s per user</text>'
               f'<text transform="translate(18 {(top + h - bottom) / 2:.0f}) rotate(-90)" text-anchor="middle">'
               "output tokens/s per GPU</text>")
    front = frontier(options)
    if len(front) > 1:
        line = " ".join(f"{sx(options[i]['tokens_per_s_per_user']):.1f},"
                        f"{sy(options[i]['output_tokens_per_s_per_gpu']):.1f}" for i in front)
        out.append(f'<polyline points="{line}"/>')
    for i, x, y in pts:
        o = options[i]
        tip = (f"{esc(o.get('key', i))}: {x:,.1f} tok/s per user, {y:,.1f} output tok/s per GPU, "
               f"SLO {esc(o.get('meets_slo', '?'))}")
        cls, r = ("front", 4.5) if i in front else ("opt", 3)
        out.append(f'<circle class="{cls}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r}"><title>{tip}</title></circle>')
    if best is not None and any(p[0] == best for p in pts):
        _, bx, by = next(p for p in pts if p[0] == best)
        out.append(f'<path class="best" d="{_star(sx(bx), sy(by), 9)}"><title>best: '
                   f'{esc(options[best].get("key", best))}</title></path>'
                   f'<text x="{sx(bx) + 11:.1f}" y="{sy(by) - 8:.1f}">best</text>')
    lx = w - right - 190
    out.append(f'<g class="legend-svg"><circle class="opt" cx="{lx}" cy="{top + 6}" r="3"/>'
               f'<text x="{lx + 8}" y="{top + 10}">option</text>'
               f'<circle class="front" cx="{lx + 60}" cy="{top + 6}" r="4.5"/>'
               f'<text x="{lx + 68}" y="{top + 10}">Pareto</text>'
               f'<path class="best" d="{_star(lx + 125, top + 6, 7)}"/>'
               f'<text x="{lx + 135}" y="{top + 10}">best</text></g>')
    out.append("</svg>")
    return "<h2>Pareto frontier</h2>\n<figure>\n" + "\n".join(out) + "\n</figure>"


def _star(cx: float, cy: float, r: float) -> str:
    """SVG path of a five-pointed star centred on (cx, cy)."""
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.45
        a = -math.pi / 2 + k * math.pi / 5
        pts.append(f"{cx + rr * math.cos(a):.1f},{cy + rr * math.sin(a):.1f}")
    return "M" + " L".join(pts) + " Z"


def _memory(opts: list[tuple[int, dict[str, Any]]], best: int | None) -> str:
    """Per option, one GPU's memory as a stacked bar: its length the GPU's total against the biggest GPU's,
    its segments the planner's accounting; what is left of the bar after the budget is outside it."""
    if not opts:
        return ""
    legend = "".join(f'<span><i style="background:{c}"></i>{esc(label)}</span>'
                     for label, c in [*((lab, col) for _, lab, col in MEMORY_PARTS), UNUSED])
    out = ["<h2>Memory per GPU</h2>", f'<p class="legend">{legend}<span>(white: outside the budget; '
           "bar lengths compare the GPUs' sizes)</span></p>"]
    biggest = max(int((o.get("memory") or {}).get("total_bytes") or 0) for _, o in opts) or 1
    for i, o in opts:
        m = o.get("memory") or {}
        parts = [(lab, col, int(m.get(k) or 0)) for k, lab, col in MEMORY_PARTS]
        used = sum(p[2] for p in parts)
        budget, total = int(m.get("budget_bytes") or 0), int(m.get("total_bytes") or 0)
        parts.append((*UNUSED, max(budget - used, 0)))
        scale = max(total, budget, used) or 1
        segs = "".join(f'<span style="width:{b / scale * 100:.3f}%;background:{col}" title="{esc(lab)} '
                       f'{b / GiB:,.2f} GiB"></span>' for lab, col, b in parts if b > 0)
        label = esc(f"{mark(i, o, best)} {o.get('gpu', '?')} {layout_label(o.get('config') or {})}: "
                    f"{used / GiB:,.2f} of {budget / GiB:,.2f} GiB budget, {total / GiB:,.2f} GiB total")
        length = min(scale / biggest, 1) * 100
        out.append(f'<div class="membar" data-key="{esc(o.get("key", ""))}"><div class="label">{label}</div>'
                   f'<div class="bar" style="width:{length:.1f}%" role="img" aria-label="{label}">{segs}</div></div>')
    return "\n".join(out)
