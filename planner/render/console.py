"""Console reports (the one rich importer)."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from planner.schemas import PlanResponse
from planner.units import GiB


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`| head` closed stdout: exit 141 like other Unix tools (rich's default is 1, our 'bug' code)."""
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141)


def make_console() -> Console:
    """A console that does not wrap reports at 80 columns when stdout is a pipe or a file."""
    probe = Console()
    return _Console(highlight=False, width=None if probe.is_terminal else 160)


def _g(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:,.2f} GiB"


def _r(rng: Any, unit: str, digits: int = 1) -> str:
    return f"{rng.expected:,.{digits}f} {unit}  ({rng.low:,.{digits}f} – {rng.high:,.{digits}f})"


def render_plan(p: PlanResponse, *, explain: bool = False, console: Console | None = None) -> None:
    """A readable plan: verdict, configuration, memory, speed, serve command, warnings (and the audit)."""
    c = console or make_console()
    m, hw, cfg = p.model, p.hardware, p.config
    verdict = "[bold green]FITS[/]" if p.feasible else "[bold red]DOES NOT FIT[/]"
    c.print(f"{verdict}  {m.name} on {hw.gpu_count} x {hw.gpu}  (vLLM {p.vllm_version}, plan {p.plan_id})")
    if p.infeasible_reason:
        c.print(f"  [red]{p.infeasible_reason}[/]")
    active = f" ({m.active_params / 1e9:.2f} B active)" if m.active_params != m.params else ""
    quant = f", {m.quantization}" if m.quantization else ""
    c.print(f"  model: {m.architecture}, {m.params / 1e9:.2f} B params{active}, {m.dtype}{quant}, "
            f"attention {m.attention}, max length {m.model_max_len:,}")

    t = Table(title="Configuration", show_header=True, header_style="bold")
    t.add_column("setting")
    t.add_column("value")
    t.add_column("decided by")
    for key, val in cfg.model_dump().items():
        d = p.decisions.get(key)
        t.add_row(key, str(val), d.by if d else "model/GPU")
    c.print(t)

    hw = p.hardware
    if hw.devices:
        dt = Table(title="GPUs on this machine", header_style="bold")
        for col in ("#", "device", "total", "free now", "held by", "used by this plan"):
            dt.add_column(col)
        for d in hw.devices:
            dt.add_row(str(d.index), d.name + (f" (MIG {d.mig_profile})" if d.mig_profile else ""),
                       _g(d.memory_total_bytes), _g(d.free_bytes), "; ".join(d.processes) or "-",
                       "yes" if d.selected else "no")
        c.print(dt)
        for note in hw.notes:
            c.print(f"  [dim]{note}[/]")
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
        mt.add_row(label, _g(val))
    mt.add_row("KV capacity (per replica)",
               f"{mem.kv_cache_tokens:,} tokens ({mem.max_concurrency:.2f}x max_model_len)")
    mt.add_row("headroom / OOM risk", f"{_g(mem.headroom_bytes)} / {mem.oom_risk}")
    c.print(mt)

    perf = p.performance
    if perf.itl_ms.expected > 0:
        w = perf.workload
        c.print(f"[bold]Speed[/] at concurrency {w.concurrency} (runs {perf.effective_concurrency}), "
                f"{w.input_len} in / {w.output_len} out:")
        c.print(f"  ITL {_r(perf.itl_ms, 'ms')}   TTFT {_r(perf.ttft_ms, 'ms')}")
        c.print(f"  decode {_r(perf.decode_tokens_per_s_per_request, 'tok/s/request')}   "
                f"output {_r(perf.output_tokens_per_s_total, 'tok/s total', 0)}")
        for a in perf.assumptions:
            c.print(f"  [dim]- {a}[/]", highlight=False)
    if p.feasible:
        c.print("[bold]Serve:[/]")
        c.print(f"  {p.serve_command}", soft_wrap=True, markup=False)
    else:  # the command of a layout that does not fit is not shown as if it could run
        c.print("[bold]Serve:[/] nothing to run: the plan does not fit; each change below makes it fit")
    if p.launch is not None and p.launch.multi_node:
        c.print(f"  on a Ray cluster of {p.launch.nodes} nodes x {p.launch.gpus_per_pod} GPUs"
                + (f", {p.launch.groups} copies" if p.launch.groups > 1 else "")
                + " (`vllm-planner generate` writes the head/worker steps)", markup=False)
    for n in p.launch.notes if p.launch is not None else []:
        c.print(f"  note: {n}", markup=False)
    for w_ in p.warnings:
        c.print(f"[yellow]warning[/] {w_.code}: {w_.message}" + (f"  [dim]({w_.rule})[/]" if w_.rule else ""))
    if p.fixes:
        c.print("[bold]To make it fit[/] (smallest change first, each re-sized with the same accounting):")
        for f in p.fixes:
            c.print(f"  {f.change}: {f.flags}  ->  {f.detail}", markup=False)
    if p.alternatives:
        at = Table(title="Alternatives considered (best first for this mode)", header_style="bold")
        for col in ("change", "TP", "PP", "DP", "weights", "KV dtype", "fits", "KV tokens", "ITL ms", "TTFT ms",
                    "tok/s total", "note"):
            at.add_column(col)
        for a in p.alternatives:
            at.add_row(a.change, str(a.tensor_parallel_size), str(a.pipeline_parallel_size),
                       str(a.data_parallel_size), a.quantization or "as is", a.kv_cache_dtype,
                       "yes" if a.fits else "no", f"{a.kv_cache_tokens:,}",
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
        c.print(f"  [bold]{key}[/] = {d.value!r}  by [cyan]{d.by}[/]: {d.reason}", markup=True)
        for s in d.superseded:
            c.print(f"      beat {s.get('rule')} = {s.get('value')!r} ({s.get('why')})", markup=False)
    if p.dropped:
        c.print("[bold]Candidates dropped by sizing rules[/]")
        for a in p.dropped:
            c.print(f"  TP {a.tensor_parallel_size} x PP {a.pipeline_parallel_size} (DP {a.data_parallel_size}, "
                    f"KV {a.kv_cache_dtype}): {'; '.join(a.reasons)}", markup=False)
    c.print("[bold]Rule packs[/]")
    for pk in p.audit.get("packs", []):
        c.print(f"  {pk['name']} {pk['version']} ({pk['layer']}) {pk['source']} sha256:{pk['sha256'][:12]}",
                markup=False)
    for ov in p.audit.get("overrides", []):
        c.print(f"  override {ov['rule']} by {ov['by']}: {ov['changed']} ({ov['reason']})", markup=False)
    c.print(f"  {len(p.audit.get('firings', []))} rule firings ({p.audit.get('engine')})")


def render_detect(data: dict[str, Any], console: Console | None = None) -> None:
    c = console or make_console()
    t = Table(title=f"GPUs (driver {data.get('driver_version') or '?'}, CUDA {data.get('cuda_version') or '?'}, "
                    f"interconnect {data.get('interconnect') or 'unknown'})", header_style="bold")
    for col in ("#", "name", "memory total", "used", "CC", "catalog"):
        t.add_column(col)
    for g in data["gpus"]:
        t.add_row(str(g["index"]), g["name"], _g(g["memory_total_bytes"]), _g(g["memory_used_bytes"]),
                  g.get("compute_capability") or "-", g.get("catalog_id") or "-")
    c.print(t)


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


def render_rows(title: str, columns: list[str], rows: list[list[str]], console: Console | None = None) -> None:
    c = console or make_console()
    t = Table(title=title, header_style="bold")
    for col in columns:
        t.add_column(col)
    for r in rows:
        t.add_row(*r)
    c.print(t)
