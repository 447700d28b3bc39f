"""Console reports (the one rich importer).

Every value from an input (model, GPU, process and pack names, messages, reasons, paths) reaches rich
through planner.render.text: `safe()` where it is interpolated into markup, `cell()` in a table, `plain()`
in a line printed without markup. The console itself strips controls from whatever text it writes, as a
second line of defence; it never interprets `:emoji:` codes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from planner.render.text import cell, echo, plain, safe, strip_controls
from planner.schemas import PlanResponse
from planner.units import GiB


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`| head` closed stdout: exit 141 like other Unix tools (rich's default is 1, our 'bug' code)."""
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        """The text of every segment without controls (styles and rich's own control segments untouched):
        an input value that missed `safe()` still cannot write an escape sequence to the terminal."""
        return super()._render_buffer(seg if seg.control else Segment(strip_controls(seg.text), seg.style)
                                      for seg in buffer)


def make_console() -> Console:
    """A console that does not wrap reports at 80 columns when stdout is a pipe or a file."""
    probe = Console()
    return _Console(highlight=False, emoji=False, width=None if probe.is_terminal else 160)


def _row(t: Table, *cells: Any) -> None:
    """A table row of input-derived values: each shown as is (see planner.render.text.cell)."""
    t.add_row(*map(cell, cells))


def _g(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:,.2f} GiB"


def _r(rng: Any, unit: str, digits: int = 1) -> str:
    return f"{rng.expected:,.{digits}f} {unit}  ({rng.low:,.{digits}f} – {rng.high:,.{digits}f})"


def render_plan(p: PlanResponse, *, explain: bool = False, console: Console | None = None) -> None:
    """A readable plan: verdict, configuration, memory, speed, serve command, warnings (and the audit)."""
    c = console or make_console()
    m, hw, cfg = p.model, p.hardware, p.config
    verdict = "[bold green]FITS[/]" if p.feasible else "[bold red]DOES NOT FIT[/]"
    c.print(f"{verdict}  {safe(m.name)} on {hw.gpu_count} x {safe(hw.gpu)}  (vLLM {safe(p.vllm_version)}, "
            f"plan {safe(p.plan_id)})")
    if p.infeasible_reason:
        c.print(f"  [red]{safe(p.infeasible_reason)}[/]")
    active = f" ({m.active_params / 1e9:.2f} B active)" if m.active_params != m.params else ""
    quant = f", {m.quantization}" if m.quantization else ""
    c.print(f"  model: {plain(m.architecture)}, {m.params / 1e9:.2f} B params{active}, {plain(m.dtype)}"
            f"{plain(quant)}, attention {plain(m.attention)}, max length {m.model_max_len:,}", markup=False)

    t = Table(title="Configuration", show_header=True, header_style="bold")
    t.add_column("setting")
    t.add_column("value")
    t.add_column("decided by")
    for key, val in cfg.model_dump().items():
        d = p.decisions.get(key)
        _row(t, key, val, d.by if d else "model/GPU")
    c.print(t)

    hw = p.hardware
    if hw.devices:
        dt = Table(title="GPUs on this machine", header_style="bold")
        for col in ("#", "device", "total", "free now", "held by", "used by this plan"):
            dt.add_column(col)
        for d in hw.devices:
            _row(dt, d.index, d.name + (f" (MIG {d.mig_profile})" if d.mig_profile else ""),
                 _g(d.memory_total_bytes), _g(d.free_bytes), "; ".join(d.processes) or "-",
                 "yes" if d.selected else ("no: " + "; ".join(d.left_out) if d.left_out else "no"))
        c.print(dt)
        for note in hw.notes:
            c.print(f"  [dim]{safe(note)}[/]")
    mem = p.memory
    g = mem.per_gpu
    mt = Table(title="Memory per GPU", show_header=False)
    mt.add_column("what")
    mt.add_column("size", justify="right")
    rows = [("total (CUDA-visible)", g.total_bytes), ("budget (x utilization)", g.budget_bytes),
            ("weights", g.weights_bytes),
            (f"activation peak (profile run, {mem.sampler} sampler)", g.activation_peak_bytes),
            ("non-torch", g.non_torch_bytes),
            (f"CUDA graphs ({'in' if mem.cuda_graph_in_budget else 'outside'} budget)", g.cuda_graph_bytes),
            ("KV cache", g.kv_cache_bytes)]
    if g.free_bytes is not None:
        rows.insert(1, ("free now (probed)", g.free_bytes))
    for label, val in rows:
        _row(mt, label, _g(val))
    _row(mt, "KV capacity (per replica)", f"{mem.kv_cache_tokens:,} tokens ({mem.max_concurrency:.2f}x max_model_len)")
    _row(mt, "headroom / OOM risk", f"{_g(mem.headroom_bytes)} / {mem.oom_risk}")
    c.print(mt)
    for line in feature_lines(p.features):
        c.print(f"  {safe(line)}", highlight=False)

    perf = p.performance
    if perf.itl_ms.expected > 0:
        w = perf.workload
        c.print(f"[bold]Speed[/] at concurrency {w.concurrency} (runs {perf.effective_concurrency}), "
                f"{w.input_len} in / {w.output_len} out:")
        c.print(f"  ITL {_r(perf.itl_ms, 'ms')}   TTFT {_r(perf.ttft_ms, 'ms')}")
        c.print(f"  decode {_r(perf.decode_tokens_per_s_per_request, 'tok/s/request')}   "
                f"output {_r(perf.output_tokens_per_s_total, 'tok/s total', 0)}")
        for a in perf.assumptions:
            c.print(f"  [dim]- {safe(a)}[/]", highlight=False)
    if p.feasible:
        c.print("[bold]Serve:[/]")
        c.print(f"  {plain(p.serve_command)}", soft_wrap=True, markup=False)
    else:  # the command of a layout that does not fit is not shown as if it could run
        c.print("[bold]Serve:[/] nothing to run: the plan does not fit; each change below makes it fit")
    if p.launch is not None and p.launch.multi_node:
        c.print(f"  on a Ray cluster of {p.launch.nodes} nodes x {p.launch.gpus_per_pod} GPUs"
                + (f", {p.launch.groups} copies" if p.launch.groups > 1 else "")
                + " (`vllm-planner generate` writes the head/worker steps)", markup=False)
    for n in p.launch.notes if p.launch is not None else []:
        c.print(f"  note: {plain(n)}", markup=False)
    for w_ in p.warnings:
        c.print(f"[yellow]warning[/] {safe(w_.code)}: {safe(w_.message)}"
                + (f"  [dim]({safe(w_.rule)})[/]" if w_.rule else ""))
    if p.fixes:
        c.print("[bold]To make it fit[/] (smallest change first, each re-sized with the same accounting):")
        for f in p.fixes:
            c.print(f"  {plain(f.change)}: {plain(f.flags)}  ->  {plain(f.detail)}", markup=False)
    if p.alternatives:
        at = Table(title="Alternatives considered (best first for this mode)", header_style="bold")
        for col in ("change", "TP", "PP", "DP", "weights", "KV dtype", "fits", "KV tokens", "ITL ms", "TTFT ms",
                    "tok/s total", "note"):
            at.add_column(col)
        for a in p.alternatives:
            _row(at, a.change, a.tensor_parallel_size, a.pipeline_parallel_size, a.data_parallel_size,
                 a.quantization or "as is", a.kv_cache_dtype, "yes" if a.fits else "no", f"{a.kv_cache_tokens:,}",
                 f"{a.itl_ms:.1f}" if a.itl_ms else "-", f"{a.ttft_ms:,.0f}" if a.ttft_ms else "-",
                 f"{a.output_tokens_per_s_total:,.0f}" if a.output_tokens_per_s_total else "-",
                 "; ".join(a.forbidden))
        c.print(at)
    if explain:
        render_explain(p, c)


def render_explain(p: PlanResponse, c: Console) -> None:
    """Per setting: the rule that decided it, why, and what it beat; then the packs."""
    c.print("[bold]Why these settings[/]")
    for key, d in p.decisions.items():
        c.print(f"  [bold]{safe(key)}[/] = {safe(repr(d.value))}  by [cyan]{safe(d.by)}[/]: {safe(d.reason)}",
                markup=True)
        for s in d.superseded:
            c.print(f"      beat {plain(s.get('rule'))} = {plain(repr(s.get('value')))} ({plain(s.get('why'))})",
                    markup=False)
    if p.dropped:
        c.print("[bold]Candidates dropped by sizing rules[/]")
        for a in p.dropped:
            c.print(f"  TP {a.tensor_parallel_size} x PP {a.pipeline_parallel_size} (DP {a.data_parallel_size}, "
                    f"KV {plain(a.kv_cache_dtype)}): {'; '.join(map(plain, a.reasons))}", markup=False)
    c.print("[bold]Rule packs[/]")
    for pk in p.audit.get("packs", []):
        c.print(f"  {plain(pk['name'])} {plain(pk['version'])} ({plain(pk['layer'])}) {plain(pk['source'])} "
                f"sha256:{plain(pk['sha256'][:12])}", markup=False)
    for ov in p.audit.get("overrides", []):
        c.print(f"  {override_line(ov)}", markup=False)
    c.print(f"  {len(p.audit.get('firings', []))} rule firings ({plain(p.audit.get('engine'))})", markup=False)


def override_line(ov: dict[str, Any]) -> str:
    """'override RULE by PACK: CHANGE (REASON)', plain text, its values stripped."""
    return f"override {plain(ov['rule'])} by {plain(ov['by'])}: {plain(ov['changed'])} ({plain(ov['reason'])})"


def render_detect(data: dict[str, Any], console: Console | None = None) -> None:
    c = console or make_console()
    gpus = data["gpus"]
    amd = any(g.get("vendor") == "amd" for g in gpus)
    stack = (f"ROCm {safe(data.get('rocm_version') or '?')}" if amd and not data.get("cuda_version")
             else f"CUDA {safe(data.get('cuda_version') or '?')}")
    t = Table(title=f"GPUs (driver {safe(data.get('driver_version') or '?')}, {stack}, "
                    f"interconnect {safe(data.get('interconnect') or 'unknown')})", header_style="bold")
    columns = ["#", "name", "memory total", "used", "gfx" if amd else "CC", "catalog", "health", "MIG"]
    if amd:
        columns[-1] = "partition"
    for col in columns:
        t.add_column(col)
    for g in gpus:
        health = "ok" if g.get("healthy", True) else "FAILING: " + "; ".join(g.get("health_problems") or ["error"])
        if amd:
            last = "/".join(p for p in (g.get("compute_partition"), g.get("memory_partition")) if p) or "-"
            cc = g.get("gfx_version") or "-"
        else:
            mig = g.get("mig")
            last = ("-" if mig is None else
                    f"{mig['mode']}" + (f": {', '.join(str(i['profile']) for i in mig['instances'])}"
                                        if mig["instances"] else ""))
            cc = g.get("compute_capability") or "-"
        _row(t, g["index"], g["name"], _g(g["memory_total_bytes"]), _g(g["memory_used_bytes"]), cc,
             g.get("catalog_id") or "-", health, last)
    c.print(t)
    for w in data.get("warnings") or []:
        c.print(Text(f"  ! {plain(w)}"))


def render_sweep(rows: list[dict[str, Any]], mode: str, console: Console | None = None) -> None:
    """The sweep table, best first under the mode's objective."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    render_rows(f"{len(rows)} configurations, best first for mode {mode}",
                ["TP", "PP", "DP", "weights", "KV", "max len", "fits", "KV tokens", "runs", "ITL ms", "TTFT ms",
                 "tok/s/req", "tok/s total", "dropped by"],
                [[str(r["tensor_parallel_size"]), str(r["pipeline_parallel_size"]), str(r["data_parallel_size"]),
                  r["quantization"] or "as is", r["kv_cache_dtype"], f"{r['max_model_len']:,}",
                  "yes" if r["fits"] else "no", f"{r['kv_cache_tokens']:,}", num(r["effective_concurrency"], "d"),
                  num(r["itl_ms"], ".1f"), num(r["ttft_ms"], ",.0f"), num(r["decode_tokens_per_s_per_request"], ".0f"),
                  num(r["output_tokens_per_s_total"], ",.0f"), "; ".join(r["forbidden"])] for r in rows], console)


def render_rows(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                console: Console | None = None) -> None:
    """A titled table; the title and every cell are shown as text (never markup), whatever they hold."""
    c = console or make_console()
    t = Table(title=safe(title), header_style="bold")
    for col in columns:
        t.add_column(safe(col))
    for r in rows:
        _row(t, *r)
    c.print(t)


def _params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e12:.2f}T" if n >= 1e12 else f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def render_models(rows: Sequence[dict[str, Any]], total: int, query: str = "",
                  console: Console | None = None) -> None:
    """`models [QUERY]`: one row per bundled model (the index.json columns: parameters, total and active for
    MoE, architecture, attention, context, quantization method, alias target)."""
    title = f"{len(rows)} of {total} bundled models match '{query}'" if query else f"{total} bundled models"
    render_rows(title, ["id", "params", "architecture", "attention", "context", "quantized", "notes"], [
        [r["id"],
         _params(r["params_total"]) + (f" ({_params(r['params_active'])} active)" if r["is_moe"] else ""),
         r["architecture"], r["attention"] or "-", f"{r['context']:,}" if r["context"] else "-",
         r["quantization"] or "-",
         ", ".join([*(["MoE"] if r["is_moe"] else []), *(["vision"] if r["multimodal"] else []),
                    *([f"alias of {r['alias_of']}"] if r["alias_of"] else [])])]
        for r in rows], console)


def render_no_models(query: str, suggestions: Sequence[str]) -> None:
    """`models QUERY` that matched nothing: one line, with the closest ids or search words."""
    hint = f"; did you mean: {', '.join(plain(x) for x in suggestions)}?" if suggestions else ""
    echo(f"no bundled model matches '{plain(query)}'{hint}")


# --- plain-text reports (click-style lines, no rich): every value through plain() -----------------------


def render_generated(output_dir: str, files: Iterable[str], plan_id: str, vllm_version: str) -> None:
    """`generate`'s summary: the directory and each file written."""
    files = list(files)
    echo(f"wrote {len(files)} files to {plain(output_dir)} (plan {plain(plan_id)}, vLLM {plain(vllm_version)}):")
    for f in files:
        echo(f"  {plain(f)}")


def render_overrides(overrides: Iterable[dict[str, Any]]) -> None:
    """One line per site override of a vendor rule (`rules show`)."""
    for ov in overrides:
        echo(override_line(ov))


def render_rule_explanation(ex: Any) -> None:
    """`rules explain`: the rule, then per alias each fact and each condition with the value it saw."""
    verdict = f"FIRED {ex.fired} time(s)" if ex.fired else "NOT FIRED"
    echo(f"{plain(ex.rule_id)} ({plain(ex.pack)}, {plain(ex.stage)}, priority {plain(ex.priority)}"
         f"{'' if ex.enabled else ', disabled'}): {verdict}")
    for alias, (fact_type, checks) in ex.aliases.items():
        echo(f"  {plain(alias)}: {plain(fact_type)}")
        for fc in checks:
            echo(f"    {plain(fc.fact_id)}: {'matches' if fc.matches else 'does not match'}")
            for c in fc.conditions:
                echo(f"      {'ok  ' if c.holds else 'FAIL'} {plain(c.prop)} {plain(c.op)} {plain(repr(c.expected))}: "
                     f"saw {plain(repr(c.seen))}")
    for n in ex.notes:
        echo(f"  note: {plain(n)}")


def render_lint(errors: Iterable[str], findings: Iterable[str]) -> None:
    """`rules lint`'s problems on stderr, one per line."""
    for line in errors:
        echo(plain(line), err=True)
    for line in findings:
        echo(f"warning: {plain(line)}", err=True)


def render_pack_tests(results: Iterable[Any], gaps: dict[str, list[str]] | None) -> None:
    """`rules test`'s text report: PASS/FAIL per case with its failures, coverage gaps, the totals."""
    results = list(results)
    failed = sum(not r.passed for r in results)
    for res in results:
        echo(f"{'PASS' if res.passed else 'FAIL'} {plain(res.file)} :: {plain(res.name)}")
        for msg in res.failures:
            echo(f"     {plain(msg)}")
    for rid in (gaps or {}).get("never_fired", []):
        echo(f"COVERAGE {plain(rid)}: never fires in any case")
    for rid in (gaps or {}).get("never_not_fired", []):
        echo(f"COVERAGE {plain(rid)}: fires in every case (add a case where it must not)")
    echo(f"{len(results) - failed} passed, {failed} failed")


def render_warnings(warnings: Iterable[Any]) -> None:
    """'warning: ...' lines on stdout (`check-log`)."""
    for w in warnings:
        echo(f"warning: {plain(w)}")


def feature_lines(f: dict[str, Any]) -> list[str]:
    """One line per serving feature the plan sized (plan JSON `features`)."""
    out = []
    if "lora" in f:
        lo = f["lora"]
        out.append(f"LoRA: {lo['max_loras']} slot(s) of rank {lo['max_lora_rank']} preallocated (in weights); "
                   f"{lo['step_overhead_ms']} ms of kernel launches per decode step")
    if "speculative" in f:
        sp = f["speculative"]
        gain = f", {sp['speedup']}x decode speed at this load" if sp.get("speedup") is not None else ""
        even = f", stops paying at {sp['break_even_batch']} running sequences" if sp.get("break_even_batch") else ""
        out.append(f"speculative: {sp['method']} k={sp['num_speculative_tokens']}"
                   + (f" (draft {sp['draft']})" if sp.get("draft") else "")
                   + (f", {sp['tokens_per_step']} tokens per step" if sp.get("tokens_per_step") else "") + gain + even)
    if "cpu_offload" in f:
        co = f["cpu_offload"]
        out.append(f"CPU offload: {co['offloaded_bytes'] / 2**30:.2f} GiB per GPU over {co['host_link']}, "
                   f"{co['ms_per_forward']} ms per forward")
    pc = f.get("prefix_caching")
    if pc and pc["enabled"] and pc["hit_rate"]:
        out.append(f"prefix cache: {pc['hit_rate']:.0%} hit rate; room for {pc['cached_prefix_tokens']:,} cached "
                   "prefix tokens beside the running batch")
    if f.get("multimodal") and f["multimodal"].get("encoder_cache_tokens") is not None:
        mm = f["multimodal"]
        out.append(f"multimodal: limits {mm['limits']}, encoder cache {mm['encoder_cache_tokens']:,} embeddings")
    return out
