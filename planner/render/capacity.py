"""Console report of `vllm-planner capacity`: header, best option, options table, Pareto chart, warnings.

The data is the command's JSON dict. Every string in it may come from input (model ids from the hub,
GPU names from nvidia-smi captures, rule messages from site packs), so each one goes through
planner.render.text's :func:`safe` before it reaches rich markup (:func:`cell` in the table): escaped so
`[/x]` cannot raise MarkupError or restyle the report, and stripped of control characters so no ANSI from
an input reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from planner.render.console import make_console
from planner.render.text import cell, safe, strip_controls

CHART_SIZE = (60, 18)  # columns x rows of the plotext chart: fixed, so pipes and tests see the same text
# Header and right-justification of the columns after mark, GPU and layout (the HTML page uses them too).
# Headers of narrow number columns break in two so the table fits the 160 columns of a pipe.
COLUMNS = (("GPUs/\nreplica", True), ("replicas", True), ("total\nGPUs", True), ("max req/s\n/replica", True),
           ("util", True), ("TTFT p{p} ms", True), ("ITL p{p} ms", True), ("SLO", False), ("$/h", True),
           ("$/M out\ntokens", True))
_SLO_STYLE = {"yes": "green", "at-risk": "yellow", "no": "red"}


def _markup(s: str) -> Text:
    """Markup built by this module (inputs already through :func:`safe`) as Text; `:name:` stays text."""
    return Text.from_markup(s, emoji=False)


def layout_label(cfg: dict[str, Any]) -> str:
    """'TP2 PP1', plus ' DP4', ' EP', ' kv fp8' and the quantization when they apply (plain text)."""
    s = f"TP{cfg.get('tensor_parallel_size', 1)} PP{cfg.get('pipeline_parallel_size', 1)}"
    dp = cfg.get("data_parallel_size") or 1
    if dp > 1:
        s += f" DP{dp}"
    if cfg.get("enable_expert_parallel"):
        s += " EP"
    kv = cfg.get("kv_cache_dtype") or "auto"
    if kv != "auto":
        s += f" kv {kv}"
    if cfg.get("quantization"):
        s += f" {cfg['quantization']}"
    return strip_controls(s)


def num(v: float | None) -> str:
    """A rate or a size with as many decimals as are useful at its magnitude; '-' when unknown."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def money(v: float | None) -> str:
    """Dollars with cents, '-' when no price is known."""
    return "-" if v is None else f"${v:,.2f}"


def latency(rng: dict[str, float] | None, digits: int) -> str:
    """'expected (low–high)' in ms."""
    if not rng or rng.get("expected") is None:
        return "-"
    return f"{rng['expected']:,.{digits}f} ({rng['low']:,.{digits}f}–{rng['high']:,.{digits}f})"


def slo_text(slo: dict[str, Any]) -> str:
    """'SLO TTFT ≤ 2,000 ms, ITL ≤ 50 ms at p95' (plain text); 'no latency SLO' when neither is set."""
    parts = [f"{name} ≤ {slo[k]:,g} ms" for name, k in (("TTFT", "ttft_ms"), ("ITL", "itl_ms"))
             if slo.get(k) is not None]
    return f"SLO {', '.join(parts)} at p{slo.get('percentile', 95)}" if parts else "no latency SLO"


def ordered(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(index, option) pairs, best first; the rest keep the command's ranking."""
    opts = list(enumerate(data.get("options") or []))
    best = data.get("best")
    if isinstance(best, int) and 0 < best < len(opts):
        opts.insert(0, opts.pop(best))
    return opts


def mark(i: int, o: dict[str, Any], best: int | None) -> str:
    """★ for the best option, ◆ for a Pareto option (both when the best is on the frontier)."""
    return ("★" if i == best else "") + ("◆" if o.get("pareto") else "")


def render_capacity(data: dict[str, Any], *, explain: bool = False, limit: int | None = 15,
                    console: Console | None = None) -> None:
    """Print the capacity report; `limit` caps the table rows (None: all, as `--all` asks)."""
    c = console or make_console()
    req = data.get("request") or {}
    opts = ordered(data)
    best = data.get("best")
    c.print(_header(req, data), highlight=False)
    pct = (req.get("slo") or {}).get("percentile", 95)
    c.print(_best_line(opts, best, pct), highlight=False)
    if opts and best is not None:
        c.print(f"  serve: {strip_controls(opts[0][1].get('serve_command', ''))}", markup=False, emoji=False,
                highlight=False, soft_wrap=True)
    if opts:
        shown = opts if limit is None else opts[:max(limit, 0)]
        table = _table(shown, best, pct)
        chart = pareto_chart(data.get("options") or [], best, color=c.is_terminal and not c.no_color)
        if shown:
            _place(c, table, chart)
        elif chart is not None:
            c.print(chart)
        if len(shown) < len(opts):
            more = len(opts) - len(shown)
            c.print(f"  … {more} more option{'s' if more != 1 else ''} not shown; --all shows them", highlight=False)
    for w in data.get("warnings") or []:
        rule = f"  [dim]({safe(w['rule'])})[/]" if w.get("rule") else ""
        c.print(_markup(f"[yellow]warning[/] {safe(w.get('code', ''))}: {safe(w.get('message', ''))}{rule}"),
                highlight=False)
    for n in data.get("notes") or []:
        c.print(_markup(f"  [dim]note: {safe(n)}[/]"), highlight=False)
    if explain:
        render_capacity_explain(data, c)


def _header(req: dict[str, Any], data: dict[str, Any]) -> Text:
    return _markup(
        f"[bold]Capacity[/] for {safe(req.get('model', '?'))} at {req.get('rate', 0):,g} req/s, "
        f"{req.get('input_len', 0):,} in / {req.get('output_len', 0):,} out; "
        f"{safe(slo_text(req.get('slo') or {}))}  [dim](vLLM {safe(data.get('vllm_version', '?'))})[/]")


def _summary(o: dict[str, Any], pct: Any) -> str:
    """One option in words (markup, inputs escaped)."""
    per, reps = o.get("gpus_per_replica", 1), o.get("replicas", "?")
    return (f"{safe(o.get('total_gpus', '?'))} x {safe(o.get('gpu', '?'))}: {safe(reps)} "
            f"replica{'s' if reps != 1 else ''} of {safe(per)} GPU{'s' if per != 1 else ''} "
            f"({safe(layout_label(o.get('config') or {}))}), {cost_text(o)}; "
            f"TTFT p{safe(pct)} {latency(o.get('ttft_ms'), 0)} ms, ITL p{safe(pct)} {latency(o.get('itl_ms'), 1)} ms; "
            f"limited by {safe(o.get('limited_by', '?'))}")


def cost_text(o: dict[str, Any]) -> str:
    """'$7.50/h, $1.56/M output tokens', or 'no price' when the packs price no such GPU."""
    if o.get("cost_per_hour") is None:
        return "no price"
    return f"{money(o.get('cost_per_hour'))}/h, {money(o.get('cost_per_million_output_tokens'))}/M output tokens"


def _best_line(opts: list[tuple[int, dict[str, Any]]], best: int | None, pct: Any) -> Text:
    if not opts:
        return _markup("[bold red]No options[/]: no catalog GPU and layout could be sized for this model.")
    if best is None:
        o = opts[0][1]
        v = str(o.get("meets_slo", "no"))
        return _markup(f"[bold red]No option meets the SLOs.[/] Closest (SLO [{_SLO_STYLE.get(v, 'red')}]"
                       f"{safe(v)}[/]): {_summary(o, pct)}")
    return _markup(f"[bold green]Best:[/] {_summary(opts[0][1], pct)}")


def _table(shown: Sequence[tuple[int, dict[str, Any]]], best: int | None, pct: Any) -> Table:
    t = Table(header_style="bold", title="Options (★ best, ◆ Pareto)")
    for col, right in (("", False), ("GPU", False), ("layout", False), *COLUMNS):
        t.add_column(col.format(p=safe(pct)), justify="right" if right else "left",
                     no_wrap=col.startswith(("TTFT", "ITL")))
    for i, o in shown:
        per = o.get("per_replica") or {}
        util = per.get("utilization")
        v = str(o.get("meets_slo", ""))
        cells = (mark(i, o, best), o.get("gpu", "?"), layout_label(o.get("config") or {}),
                 o.get("gpus_per_replica", "-"), o.get("replicas", "-"), o.get("total_gpus", "-"),
                 num(per.get("max_rate")), "-" if util is None else f"{util * 100:.0f}%",
                 latency(o.get("ttft_ms"), 0), latency(o.get("itl_ms"), 1))
        t.add_row(*map(cell, cells), _markup(f"[{_SLO_STYLE.get(v, 'red')}]{safe(v)}[/]"),
                  cell(money(o.get("cost_per_hour"))), cell(money(o.get("cost_per_million_output_tokens"))))
    return t


def _place(c: Console, table: Table, chart: RenderableType | None) -> None:
    """The chart beside the table when both fit the console's width, else below it."""
    if chart is None:
        c.print(table)
        return
    need = Measurement.get(c, c.options, table).maximum + CHART_SIZE[0] + 2
    if c.width >= need:
        grid = Table.grid(padding=(0, 2))
        grid.add_row(table, chart)
        c.print(grid)
    else:
        c.print(table)
        c.print(chart)


def frontier(options: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the Pareto options that have both speeds, in order of tokens/s per user (how they join)."""
    pts = [i for i, o in enumerate(options) if o.get("pareto") and _xy(o) is not None]
    return sorted(pts, key=lambda i: _xy(options[i]))  # type: ignore[arg-type, return-value]


def _xy(o: dict[str, Any]) -> tuple[float, float] | None:
    x, y = o.get("tokens_per_s_per_user"), o.get("output_tokens_per_s_per_gpu")
    return None if x is None or y is None else (float(x), float(y))


def pareto_chart(options: Sequence[dict[str, Any]], best: int | None, *, color: bool = False) -> Text | None:
    """The options as a plotext scatter: x tokens/s per user, y output tokens/s per GPU, frontier joined.

    plotext draws into one global figure, so it is cleared first and given a fixed size: the text is the
    same whatever the terminal. Colors only when `color` (a terminal); the ANSI it emits is plotext's own
    (no input text is drawn) and becomes rich styles through Text.from_ansi. None when nothing to plot.
    """
    pts = [(i, xy) for i, o in enumerate(options) if (xy := _xy(o)) is not None]
    if not pts:
        return None
    import plotext as plt  # imported here: only this report draws charts

    plt.clear_figure()
    plt.plot_size(*CHART_SIZE)
    plt.theme("pro" if color else "clear")
    xs, ys = [p[1][0] for p in pts], [p[1][1] for p in pts]
    plt.xlim(*_padded(xs))
    plt.ylim(*_padded(ys))
    kw = (lambda col: {"color": col}) if color else (lambda col: {})
    plt.scatter(xs, ys, marker="·", **kw("gray+"))
    front = frontier(options)
    if front:
        fx = [_xy(options[i])[0] for i in front]  # type: ignore[index]
        fy = [_xy(options[i])[1] for i in front]  # type: ignore[index]
        if len(front) > 1:
            plt.plot(fx, fy, marker="braille", **kw("green"))
        plt.scatter(fx, fy, marker="◆", **kw("green"))
    if best is not None and 0 <= best < len(options) and (bxy := _xy(options[best])) is not None:
        plt.scatter([bxy[0]], [bxy[1]], marker="★", **kw("orange+"))
    plt.title("Pareto frontier")
    plt.xlabel("tokens/s per user")
    plt.ylabel("output tok/s per GPU")
    text = Text.from_ansi(plt.build(), no_wrap=True, overflow="crop")
    plt.clear_figure()
    text.append("\n· option  ◆ Pareto frontier (joined)  ★ best")
    return text


def _padded(vals: list[float]) -> tuple[float, float]:
    """Axis limits 5% beyond the data, so points do not sit on the frame (and one value still has a range)."""
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    return max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad


def render_capacity_explain(data: dict[str, Any], c: Console) -> None:
    """Per decision: its value, the rule that made it, why, and what it beat (as `plan --explain` shows)."""
    c.print("[bold]Why this option[/]")
    for key, d in (data.get("decisions") or {}).items():
        c.print(_markup(f"  [bold]{safe(key)}[/] = {safe(repr(d.get('value')))}  by [cyan]{safe(d.get('by'))}[/]: "
                        f"{safe(d.get('reason', ''))}"), highlight=False)
        for s in d.get("superseded") or []:
            line = (f"beat {s.get('rule')} = {s.get('value')!r} ({s.get('why')})" if isinstance(s, dict)
                    else f"beat {s}")
            c.print(f"      {strip_controls(line)}", markup=False, emoji=False, highlight=False)
    packs = (data.get("audit") or {}).get("packs") or []
    if packs:
        c.print("[bold]Rule packs[/]")
    for pk in packs:
        c.print(f"  {strip_controls(pk.get('name'))} {strip_controls(pk.get('version'))} "
                f"({strip_controls(pk.get('layer'))}) {strip_controls(pk.get('source'))} "
                f"sha256:{strip_controls(pk.get('sha256', ''))[:12]}", markup=False, emoji=False, highlight=False)
