"""Decisions report: the plan's choices next to what an experienced vLLM operator would launch.

Each case in benchmarks/decision_cases.yaml is a `vllm-planner plan` invocation and the expert's
expected values, each worked out from vLLM's source, a vLLM recipe or a hand calculation (the case's
`why` and `source`), never from the planner's output. This script plans every case in-process and
prints one row per case: the plan's choice, the expert's, and whether they agree.

    python benchmarks/decisions.py            # table; exit 1 when any case disagrees
    python benchmarks/decisions.py --json     # one JSON object: {cases: [...], agree, total}
    python benchmarks/decisions.py --case ID  # one case, with the plan's reason and fixes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from planner.cli import cli  # noqa: E402
from planner.yamlio import load_yaml_file, to_plain  # noqa: E402

CASES = HERE / "decision_cases.yaml"
CONFIG_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "enable_expert_parallel",
               "quantization", "kv_cache_dtype")


def run_plan(args: list[str]) -> tuple[int, dict[str, Any] | None, str]:
    """Run `vllm-planner plan ARGS --json` in-process: (exit code, plan JSON or None, error text)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["plan", *args, "--json"], prog_name="vllm-planner", standalone_mode=False)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        except Exception as e:  # noqa: BLE001 - a click usage error or a bug is the case's outcome
            code, err = 2, io.StringIO(f"{type(e).__name__}: {e}")
    text = out.getvalue().strip()
    try:
        plan = json.loads(text) if text else None
    except json.JSONDecodeError:
        plan = None
    return code, plan, err.getvalue().strip()


def check(case: dict[str, Any], code: int, plan: dict[str, Any] | None, err: str) -> list[str]:
    """The expected values the plan misses (empty: it agrees)."""
    want = case.get("expect") or {}
    if "exit" in want:  # bad input: the expert expects a one-line error, not a plan
        ok = code == want["exit"] and want.get("error_contains", "") in err
        return [] if ok else [f"exit {code} {err[-120:]!r} (want exit {want['exit']} naming "
                              f"{want.get('error_contains')!r})"]
    if plan is None:
        return [f"no plan (exit {code}): {err.splitlines()[-1] if err else 'no output'}"]
    cfg, misses = plan["config"], []
    if "feasible" in want and plan["feasible"] != want["feasible"]:
        misses.append(f"feasible {plan['feasible']} (want {want['feasible']})")
    for key in CONFIG_KEYS:
        if key in want and cfg.get(key) != want[key]:
            misses.append(f"{key} {cfg.get(key)} (want {want[key]})")
    if "min_max_model_len" in want and cfg["max_model_len"] < want["min_max_model_len"]:
        misses.append(f"max_model_len {cfg['max_model_len']} (want >= {want['min_max_model_len']})")
    reason = plan.get("infeasible_reason") or ""
    if "refused_by_prefix" in want and want["refused_by_prefix"] not in reason:
        misses.append(f"reason {reason[:80]!r} (want it to name {want['refused_by_prefix']!r})")
    flags = [f["flags"] for f in plan.get("fixes", [])]
    if "fix_contains" in want and not any(want["fix_contains"] in f for f in flags):
        misses.append(f"fixes {flags} (want one with {want['fix_contains']!r})")
    if "fix_not_contains" in want and any(want["fix_not_contains"] in f for f in flags):
        misses.append(f"fixes {flags} (want none with {want['fix_not_contains']!r})")
    return misses


def summary(plan: dict[str, Any] | None) -> str:
    if plan is None:
        return "-"
    c = plan["config"]
    lay = f"TP{c['tensor_parallel_size']} PP{c['pipeline_parallel_size']} DP{c['data_parallel_size']}"
    lay += " EP" if c.get("enable_expert_parallel") else ""
    quant = f" {c['quantization']}" if c.get("quantization") else ""
    kv = " kv-fp8" if c["kv_cache_dtype"] != "auto" else ""
    return ("FITS " if plan["feasible"] else "NO-FIT ") + lay + quant + kv + f" ctx {c['max_model_len']}"


def expected(case: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in (case.get("expect") or {}).items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--case", help="run one case and show the plan's reasons and fixes")
    args = ap.parse_args(argv)
    cases = to_plain(load_yaml_file(CASES))
    if args.case:
        cases = [c for c in cases if c["id"] == args.case]
        if not cases:
            print(f"error: no case {args.case!r} in {CASES}", file=sys.stderr)
            return 2
    rows = []
    for case in cases:
        code, plan, err = run_plan([str(a) for a in case["args"]])
        misses = check(case, code, plan, err)
        rows.append({"id": case["id"], "kind": case.get("kind"), "args": case["args"], "plan": summary(plan),
                     "expert": expected(case), "why": case.get("why", "").strip(), "agree": not misses,
                     "misses": misses, "exit": code,
                     "reason": (plan or {}).get("infeasible_reason"),
                     "fixes": [f["flags"] for f in (plan or {}).get("fixes", [])]})
    agree = sum(r["agree"] for r in rows)
    if args.json:
        print(json.dumps({"cases": rows, "agree": agree, "total": len(rows)}, indent=1))
    else:
        for r in rows:
            mark = "ok " if r["agree"] else "NO "
            print(f"{mark} {r['id']:<44} [{r['kind']}] plan: {r['plan']}")
            print(f"     expert: {r['expert']}")
            for m in r["misses"]:
                print(f"     miss: {m}")
            if args.case:
                print(f"     why: {r['why']}\n     reason: {r['reason']}\n     fixes: {r['fixes']}")
        print(f"\n{agree}/{len(rows)} cases agree with the expert")
    return 0 if agree == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
