#!/usr/bin/env python3
"""Replay measured vLLM runs through the capacity load model (planner/capacity/load.py); report its error.

Usage: python benchmarks/capacity_accuracy.py [--json] [--rows] [--check] [--no-sim] [--sim-saturation]

Two questions, on the same measured runs as benchmarks/perf_accuracy.py (whose planning this script imports:
every point is planned with the row's settings pinned by perf_accuracy.prepare, its workload read as
perf_accuracy reads it, ShareGPT means, Little's law and exclusions included):

1. max_rate. Runs that offer every request at once (every prompt at t=0, an offline drain, an infinite
   request rate behind a server-side max-num-seqs) measure what one replica sustains: measured requests/s
   (completed / duration when the row has both, the unrounded request_throughput_rps; else
   request_throughput_rps; else output tokens/s / mean output length) against saturation(rep).max_rate.
   Two sets, scored apart:
     calibration  perf_points.json rows (the perf model's params were fitted on them)
     held out     GPUStack lab bursts (every prompt at t=0, no --max-concurrency): no fit has seen them
   Skipped, with the reason: non-vLLM engines, disaggregated serving, GPUs or models the planner does not
   hold (perf_accuracy.EXCLUDED and the lab's exclusions), closed-loop runs (a client concurrency cap is not
   saturation), and bursts whose throughput is the drain of too few prompts (perf_accuracy.drain_dominated:
   fewer than 4 batches; a row's num_prompts counts when perf_accuracy did not model it as a burst).
   Dense data parallelism is separate replicas: the model is run on one (dp=1) and multiplied by dp; an MoE
   engine's lock-stepped DP ranks are one replica (load.py's Replica covers them).
2. Latency at a fixed rate. Open-loop runs at a stated request rate (perf_points.json request_rate; the lab has
   none): at_rate(rep, sat, rate / replicas, p) at p = 0.5 and 0.99 against the measured median and p99 TTFT
   and ITL; a measured TPOT (a request's mean ITL) is compared with the model's mean ITL, a measured mean
   TTFT with the predicted median (the closed form has no mean TTFT). Nothing is tuned to these rows.

When planner/capacity/simulate.py exists with simulate(inp, params, rate, requests=, seed=) -> SimResult, its
predictions are shown beside the closed form's for the fixed-rate points at the row's rate (--no-sim leaves it
out); --sim-saturation adds its throughput at 3x max_rate for the saturation points (the scheduler replay,
preemption included; ~6 s more on a 2-core VM, most of it the KV-starved 32k-prompt bursts).

Error is predicted/measured - 1; "within 30%" is |error| <= 30%; the worst points are ranked by
|log(predicted/measured)|. --check exits 1 unless at least 80% of each set is within 30% (issue 18).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import perf_accuracy as pa  # noqa: E402

from planner.capacity.load import Replica, at_rate, saturation  # noqa: E402
from planner.perf import PerfInputs  # noqa: E402
from planner.units import cdiv  # noqa: E402

WITHIN = 0.30  # issue 18: max_rate within 30% ...
BAR = 0.80  # ... for at least 80% of the points of each set
PERCENTILES = (0.5, 0.99)
SIM_REQUESTS, SIM_WARMUP, SIM_SEED = 2000, 200, 0  # fixed-rate points: the simulator's defaults
# saturation points: 3x max_rate, 500 measured requests (throughput within 4% of 2,000's on every point, 1/3 the time)
SIM_OVERLOAD, SIM_SAT_REQUESTS, SIM_SAT_WARMUP = 3.0, 500, 100
SATURATED_BUCKETS = ("saturated", "prefill_heavy")

# (label, measured key, what the model predicts for it, note)
LATENCY_METRICS = (
    ("TTFT p50", "ttft_ms_median", ("ttft", 0.5), ""),
    ("TTFT p99", "ttft_ms_p99", ("ttft", 0.99), ""),
    ("TTFT mean", "ttft_ms", ("ttft", 0.5), "measured is a mean TTFT (of 3 seeds' means); predicted is the median"),
    ("ITL p50", "itl_ms_median", ("itl", 0.5), ""),
    ("ITL p99", "itl_ms_p99", ("itl", 0.99), ""),
    ("TPOT p50", "tpot_ms_median", ("itl_mean", 0.5), "TPOT is a request's mean ITL: compared with the mean ITL"),
    ("TPOT mean", "tpot_ms", ("itl_mean", 0.5), "measured is a mean TPOT: compared with the mean ITL"),
)
NOT_COMPARED = {"tpot_ms_p99": "TPOT p99 (the p99 over requests of a request's mean ITL) has no counterpart in the "
                               "model: not compared"}


# ------------------------------------------------------------------------------------------- helpers


def sim_api() -> tuple[Any, str]:
    """simulate() when planner/capacity/simulate.py exists with the expected API, else (None, why)."""
    try:
        from planner.capacity import simulate as mod
    except ImportError as e:
        return None, f"planner/capacity/simulate.py not importable ({e})"
    fn = getattr(mod, "simulate", None)
    if fn is None:
        return None, "planner/capacity/simulate.py has no simulate()"
    names = inspect.signature(fn).parameters
    if not {"inp", "params", "rate", "requests", "warmup", "seed"} <= set(names):
        return None, f"simulate{inspect.signature(fn)} is not simulate(inp, params, rate, requests=, warmup=, seed=)"
    return fn, ""


def replica_of(pp: pa.Prepared) -> tuple[PerfInputs, int]:
    """The inputs of ONE replica and the number of replicas: dense DP ranks are separate replicas; an MoE
    engine's lock-stepped DP ranks step together and stay one replica."""
    inp = pp.inputs
    if inp.dp > 1 and not inp.num_experts:
        return replace(inp, dp=1, concurrency=cdiv(inp.concurrency, inp.dp)), inp.dp
    return inp, 1


def measured_rps(metrics: dict[str, Any], output_len: int) -> tuple[float, str]:
    """Measured requests/s of a run, and which field it came from."""
    if metrics.get("num_successful") and metrics.get("duration_s"):
        return metrics["num_successful"] / metrics["duration_s"], "num_successful / duration_s"
    if metrics.get("request_throughput_rps"):
        return float(metrics["request_throughput_rps"]), "request_throughput_rps"
    return float(metrics["output_tok_s_total"]) / output_len, "output_tok_s_total / mean output length"


def is_saturation_row(row: dict[str, Any]) -> bool:
    """A perf_points.json row that offers every request at once (or at an effectively infinite rate)."""
    rate = row.get("request_rate")
    if isinstance(rate, str) and "max-concurrency" in rate:  # closed loop behind a client cap
        return False
    if isinstance(rate, str) and rate.lower().startswith(("inf", "offline")):
        return True
    return row.get("regime_bucket") in SATURATED_BUCKETS or "saturated" in str(row.get("regime", ""))


def workload(p: pa.Point, row: dict[str, Any]) -> str:
    """The run's workload: ShareGPT, or random prompts of a nominal input/output length (the lab's five shapes)."""
    if "ShareGPT" in str(row.get("dataset")) or "ShareGPT" in p.note:
        return "ShareGPT"
    nominal = min((128, 2000, 4000, 32000), key=lambda n: abs(math.log(p.input_len / n)))
    return f"random {nominal}/{ {128: 4, 2000: 100, 4000: 200, 32000: 100}[nominal]}"


def drain_skip(pp: pa.Prepared, prompts: int | None) -> str:
    """perf_accuracy's drain_dominated rule, with the row's prompt count when perf_accuracy did not model a burst."""
    probe = pp if pp.point.prompts or not prompts else replace(pp, point=replace(pp.point, prompts=prompts))
    if not pa.drain_dominated(probe):
        return ""
    batch = pa.perf.batch_per_replica(pp.inputs, bool(pp.params["chunked_prefill"])) * pp.inputs.dp
    n = probe.point.prompts
    return (f"drain of too few prompts: {n} prompts fill {n / batch:.1f} batches of {batch} "
            f"(< {pa.BURST_MIN_WAVES}; perf_accuracy.drain_dominated)")


# ------------------------------------------------------------------------------------------- max_rate


def saturation_record(pp: pa.Prepared, row: dict[str, Any], set_name: str, sim: Any) -> dict[str, Any]:
    inp, replicas = replica_of(pp)
    rep = Replica(inp, dict(pp.params))
    sat = saturation(rep)
    predicted = sat.max_rate * replicas
    measured, source = measured_rps(row["metrics"], pp.point.output_len)
    ratio = predicted / measured
    rec: dict[str, Any] = {
        "id": pp.point.id, "set": set_name, "model": pp.point.model.split("/")[-1], "gpu": pp.point.gpu,
        "gpus": pp.point.gpus, "replicas": replicas, "input_len": inp.input_len, "output_len": inp.output_len,
        "prompts": pp.point.prompts or row.get("num_prompts"), "measured_rps": round(measured, 4),
        "measured_from": source, "predicted_rps": round(predicted, 4), "ratio": round(ratio, 4),
        "abs_error": abs(ratio - 1), "within": abs(ratio - 1) <= WITHIN, "limited_by": sat.limited_by,
        "running_cap": sat.running_cap, "async_scheduling": "async-scheduling" in pp.point.note,
        "workload": workload(pp.point, row), "gpu_group": pp.point.group, "note": pp.point.note,
    }
    prompts, running = rec["prompts"], sat.running_cap * replicas
    if prompts:  # diagnostic only: perf_accuracy's finite burst, N prompts through `running` slots in whole waves
        rec["ratio_waves"] = round(ratio * prompts / (math.ceil(prompts / running) * running), 4)
    if sim is not None:
        try:
            r = sim(inp, dict(pp.params), SIM_OVERLOAD * sat.max_rate, requests=SIM_SAT_REQUESTS,
                    warmup=SIM_SAT_WARMUP, seed=SIM_SEED)
            rec["sim_rps"] = round(r.throughput_rps * replicas, 4)
            rec["sim_ratio"] = round(r.throughput_rps * replicas / measured, 4)
            rec["sim_preemptions"] = r.preemptions
        except ValueError as e:
            rec["sim_note"] = str(e)
    return rec


def row_skip(rid: str, row: dict[str, Any], by_row: dict[str, Any]) -> str:
    """Why a perf_points.json row cannot be replayed as one vLLM replica ("" when it can)."""
    engine = str(row.get("engine", ""))
    if row.get("engine_family") != "vLLM":
        return f"not vLLM ({engine})"
    if "disaggregated" in engine or "disaggregated" in str(row.get("regime", "")):
        return f"disaggregated serving ({engine}): not one vLLM replica"
    if rid in pa.EXCLUDED:
        return pa.EXCLUDED[rid]
    if rid not in by_row:
        return "not replayed by benchmarks/perf_accuracy.py (no POINTS entry)"
    return ""


def calibration_rows(wanted: Any) -> tuple[dict[str, dict[str, Any]], list[Any], dict[str, str]]:
    """perf_points.json's rows by id, the perf_accuracy points of the `wanted` rows that replay as one vLLM
    replica, and the wanted rows skipped with the reason."""
    rows = {r["id"]: r for r in json.loads((pa.DATA / "perf_points.json").read_text())["points"]}
    by_row = {p.row: p for p in pa.POINTS}
    skipped: dict[str, str] = {}
    todo = []
    for rid, row in rows.items():
        if not wanted(row):
            continue
        if why := row_skip(rid, row, by_row):
            skipped[rid] = why
        else:
            todo.append(by_row[rid])
    return rows, todo, skipped


def calibration_saturation(sim: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """max_rate records of perf_points.json's saturation rows, and the skipped rows with the reason."""
    rows, todo, skipped = calibration_rows(is_saturation_row)
    recs = []
    for pp in pa.prepare(todo, rows):
        row = rows[pp.point.row]
        if why := drain_skip(pp, row.get("num_prompts")):
            skipped[pp.point.id] = why
        else:
            recs.append(saturation_record(pp, row, "calibration", sim))
    return recs, skipped


def held_out_saturation(sim: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """max_rate records of the GPUStack lab bursts, and the skipped lab runs with the reason."""
    calibration = json.loads((pa.DATA / "perf_points.json").read_text())["points"]
    runs = {r["id"]: r for r in json.loads((pa.DATA / pa.LAB_FILE).read_text())["runs"]}
    closed, held, excluded, _ = pa.lab_points({"runs": list(runs.values())}, calibration)
    skipped = dict(excluded)
    for p in closed:
        skipped[p.id] = f"closed loop at max-concurrency {p.concurrency} (a calibration run): not saturated"
    bursts = []
    for p in held:
        if p.prompts:
            bursts.append(p)
        else:
            skipped[p.id] = f"closed loop at max-concurrency {p.concurrency} (--async-scheduling): not saturated"
    recs = []
    for pp in pa.prepare(bursts, runs):
        if why := drain_skip(pp, None):
            skipped[pp.point.id] = why
        else:
            recs.append(saturation_record(pp, runs[pp.point.row], "held_out", sim))
    return recs, skipped


def saturation_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    if not recs:
        return {"n": 0}
    waves = [r.get("ratio_waves", r["ratio"]) for r in recs]
    worst = sorted(recs, key=lambda r: -abs(math.log(r["ratio"])))[:3]
    return {"n": len(recs), "median_abs_error": statistics.median(r["abs_error"] for r in recs),
            "within_30pct": sum(r["within"] for r in recs) / len(recs), "within_n": sum(r["within"] for r in recs),
            "median_ratio": statistics.median(r["ratio"] for r in recs),
            "worst": [{"id": r["id"], "ratio": r["ratio"], "measured_rps": r["measured_rps"],
                       "predicted_rps": r["predicted_rps"], "limited_by": r["limited_by"]} for r in worst],
            "meets_bar": sum(r["within"] for r in recs) / len(recs) >= BAR,
            # diagnostic, not the model under test: the same prediction with perf_accuracy's finite-burst waves
            "within_30pct_with_waves": sum(abs(w - 1) <= WITHIN for w in waves) / len(recs),
            "median_ratio_with_waves": statistics.median(waves),
            **_sim_summary([r["sim_ratio"] for r in recs if "sim_ratio" in r])}


def _sim_summary(ratios: list[float]) -> dict[str, Any]:
    """The simulator's throughput at 3x max_rate against the measured rate (beside the closed form's)."""
    if not ratios:
        return {}
    return {"sim_n": len(ratios), "sim_median_ratio": statistics.median(ratios),
            "sim_within_30pct": sum(abs(x - 1) <= WITHIN for x in ratios) / len(ratios)}


def by_key(recs: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    kinds = sorted({r[key] for r in recs})
    return {w: saturation_summary([r for r in recs if r[key] == w]) for w in kinds}


# ------------------------------------------------------------------------------------------- fixed rate


def fixed_rate(sim: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One record per (point, metric) of the open-loop runs at a stated request rate."""
    rows, todo, skipped = calibration_rows(lambda row: isinstance(row.get("request_rate"), (int, float)))
    recs = []
    for pp in pa.prepare(todo, rows):
        row = rows[pp.point.row]
        inp, replicas = replica_of(pp)
        rate = float(row["request_rate"]) / replicas
        rep = Replica(inp, dict(pp.params))
        sat = saturation(rep)
        pred = {}
        for q in PERCENTILES:
            a = at_rate(rep, sat, rate, q)
            pred[("ttft", q)], pred[("itl", q)], pred[("itl_mean", q)] = a.ttft_ms, a.itl_ms, a.itl_mean_ms
        util = rate / sat.max_rate
        simr, sim_note = None, ""
        if sim is not None:
            try:
                simr = sim(inp, dict(pp.params), rate, requests=SIM_REQUESTS, warmup=SIM_WARMUP, seed=SIM_SEED)
            except ValueError as e:
                sim_note = str(e)
        base = {"id": pp.point.id, "model": pp.point.model.split("/")[-1], "gpu": pp.point.gpu, "gpus": pp.point.gpus,
                "rate_rps": float(row["request_rate"]), "replicas": replicas, "rate_per_replica": rate,
                "input_len": inp.input_len, "output_len": inp.output_len, "utilization": round(util, 4),
                "max_rate": round(sat.max_rate, 4), "measured_rps": row["metrics"].get("request_throughput_rps"),
                "note": pp.point.note}
        for label, key, what, note in LATENCY_METRICS:
            if key not in row["metrics"]:
                continue
            measured = float(row["metrics"][key])
            value = pred[what]
            rec = {**base, "metric": label, "measured_key": key, "measured": measured, "predicted": round(value, 3),
                   "ratio": round(value / measured, 4), "compared": note}
            if simr is not None:
                kind, q = what
                table = simr.ttft_ms if kind == "ttft" else simr.itl_ms
                s = table[0] if kind == "itl_mean" or key == "ttft_ms" else table[round(q * 100)]
                rec["sim"], rec["sim_ratio"] = round(s, 3), round(s / measured, 4)
                if key == "ttft_ms":
                    rec["compared"] = "measured is a mean TTFT (of 3 seeds' means): predicted median, simulated mean"
            elif sim_note:
                rec["sim_note"] = sim_note
            recs.append(rec)
        for key, why in NOT_COMPARED.items():
            if key in row["metrics"]:
                skipped[f"{pp.point.id} {key}"] = why
    return recs, skipped


# ------------------------------------------------------------------------------------------- main


def report(with_sim: bool = True, sim_saturation: bool = False) -> dict[str, Any]:
    """Everything the script prints, as one dict."""
    t0 = time.perf_counter()
    sim, sim_why = sim_api() if with_sim else (None, "--no-sim")
    sat_sim = sim if sim_saturation else None
    cal, cal_skipped = calibration_saturation(sat_sim)
    held, held_skipped = held_out_saturation(sat_sim)
    lat, lat_skipped = fixed_rate(sim)
    sync_held = [r for r in held if not r["async_scheduling"]]
    return {
        "max_rate": {
            "calibration": {"summary": saturation_summary(cal), "records": cal, "skipped": cal_skipped,
                            "by_workload": by_key(cal, "workload"), "by_gpu": by_key(cal, "gpu_group")},
            "held_out": {"summary": saturation_summary(held), "records": held, "skipped": held_skipped,
                         "by_workload": by_key(held, "workload"), "by_gpu": by_key(held, "gpu_group"),
                         "summary_without_async_scheduling": saturation_summary(sync_held)},
        },
        "fixed_rate": {"records": lat, "skipped": lat_skipped},
        "simulator": ("used for the fixed-rate points" + (" and at 3x max_rate for the saturation points" if sat_sim
                                                          else "") if sim is not None else f"not used: {sim_why}"),
        "bar": {"within": WITHIN, "share": BAR},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def failures(result: dict[str, Any]) -> list[str]:
    """The sets that miss issue 18's bar (max_rate within 30% for >= 80% of the points)."""
    bad = []
    for name, s in result["max_rate"].items():
        summ = s["summary"]
        if not summ["n"] or not summ["meets_bar"]:
            bad.append(f"{name}: {summ.get('within_n', 0)}/{summ['n']} within {WITHIN:.0%} < {BAR:.0%}")
    return bad


def _print_summary(title: str, summ: dict[str, Any]) -> None:
    if not summ["n"]:
        print(f"{title}: no points")
        return
    worst = ", ".join(f"{w['id']} x{w['ratio']:.2f}" for w in summ["worst"])
    print(f"{title}: n={summ['n']}  median |error| {summ['median_abs_error']:.1%}  within 30% "
          f"{summ['within_n']}/{summ['n']} ({summ['within_30pct']:.0%})  median ratio {summ['median_ratio']:.2f}  "
          f"{'meets' if summ['meets_bar'] else 'MISSES'} the 80% bar\n    worst (pred/meas): {worst}\n"
          f"    diagnostic, with perf_accuracy's finite-burst waves: within 30% {summ['within_30pct_with_waves']:.0%}, "
          f"median ratio {summ['median_ratio_with_waves']:.2f}"
          + (f"\n    simulator at 3x max_rate: n={summ['sim_n']}  within 30% {summ['sim_within_30pct']:.0%}  "
             f"median ratio {summ['sim_median_ratio']:.2f}" if "sim_n" in summ else ""))


def _print_text(result: dict[str, Any], rows: bool) -> None:
    sets = result["max_rate"]
    print("max_rate: saturation(rep).max_rate vs measured requests/s of runs that offer every request at once")
    for name in ("calibration", "held_out"):
        s = sets[name]
        recs = sorted(s["records"], key=lambda r: -abs(math.log(r["ratio"])))
        shown = recs if rows else recs[:3]
        if shown:
            print(f"  {'point':34s} {'measured':>9s} {'predicted':>9s} {'ratio':>6s}  {'sim@3x':>7s}  limited by (cap)")
        for r in shown:
            sim = f"{r['sim_rps']:7.3f}" if "sim_rps" in r else f"{'-':>7s}"
            print(f"  {r['id']:34s} {r['measured_rps']:9.3f} {r['predicted_rps']:9.3f} {r['ratio']:6.2f}  {sim}  "
                  f"{r['limited_by']} ({r['running_cap']}){'  async-scheduling' if r['async_scheduling'] else ''}")
        label = ("calibration (perf_points.json)" if name == "calibration"
                 else "held out (GPUStack lab bursts, never fitted)")
        _print_summary(f"  {label}", s["summary"])
        if name == "held_out":
            _print_summary("    of which without --async-scheduling", s["summary_without_async_scheduling"])
        for w, ws in [*s["by_workload"].items(), *s["by_gpu"].items()]:
            print(f"    {w:18s} n={ws['n']:2d}  median ratio {ws['median_ratio']:5.2f}  "
                  f"within 30% {ws['within_n']}/{ws['n']}")
        if name == "held_out":
            print(f"    skipped: {len(s['skipped'])} lab runs (reasons with --json)")
        else:
            print("    skipped:")
            for k, v in s["skipped"].items():
                print(f"      {k}: {v}")
    print("\nlatency at a fixed request rate (at_rate at p50 / p99; sim = planner/capacity/simulate.py)")
    print(f"  {'point':6s} {'rate':>5s} {'util':>5s} {'metric':10s} {'measured':>9s} {'predicted':>9s} {'ratio':>6s} "
          f"{'sim':>9s} {'ratio':>6s}")
    for r in result["fixed_rate"]["records"]:
        sim = f"{r['sim']:9.2f} {r['sim_ratio']:6.2f}" if "sim" in r else f"{'-':>9s} {'-':>6s}"
        print(f"  {r['id']:6s} {r['rate_rps']:5g} {r['utilization']:5.2f} {r['metric']:10s} {r['measured']:9.2f} "
              f"{r['predicted']:9.2f} {r['ratio']:6.2f} {sim}  {r['compared']}")
    for k, v in result["fixed_rate"]["skipped"].items():
        print(f"  skipped {k}: {v}")
    print(f"\nsimulator: {result['simulator']}; {result['seconds']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print every record, summary and skipped point as JSON")
    ap.add_argument("--rows", action="store_true", help="print every saturation point, not only the worst three")
    ap.add_argument("--check", action="store_true", help="exit 1 unless each set has >= 80%% of max_rate within 30%%")
    ap.add_argument("--no-sim", action="store_true", help="leave out planner/capacity/simulate.py")
    ap.add_argument("--sim-saturation", action="store_true",
                    help="also simulate every saturation point at 3x max_rate (~6 s more)")
    args = ap.parse_args(argv)
    result = report(with_sim=not args.no_sim, sim_saturation=args.sim_saturation)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        _print_text(result, args.rows)
    if args.check:
        bad = failures(result)
        for b in bad:
            print(f"bar missed: {b}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
