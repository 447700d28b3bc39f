#!/usr/bin/env python3
"""Speed benchmark: whole-process and in-process timings of the planner, against the cost of importing
its dependencies. Not a test: run it, read it, compare with benchmarks/README.md.

Usage: python benchmarks/bench.py [--runs N] [--json]

Figures (median of N runs; whole-process runs use `python -m planner.cli` from this checkout):
  deps import        python -c "import pydantic, click, ruamel.yaml, rich.console, packaging.version, durable.engine"
  cold plan 8B       vllm-planner plan --model meta-llama/Llama-3.1-8B-Instruct --gpu H100 --json
  cold plan 671B     vllm-planner plan --model deepseek-ai/DeepSeek-R1 --gpu H200 --gpus 8 --json
  capacity 3 GPUs    vllm-planner capacity --model meta-llama/Llama-3.1-8B-Instruct --rate 20 --input-len 1000
                       --output-len 200 --slo-ttft-ms 1000 --slo-itl-ms 50 --gpu H100 --gpu L40S --gpu A100 --json
  capacity catalog   the same over every catalog GPU (no --gpu)
  models list        vllm-planner models --json (the whole offline catalog, read from its index)
  models search      vllm-planner models qwen3 moe
  pack load          load + validate the vendor packs (fresh process, modules already imported)
  pack compile       compile the three stages (in-process)
  rule evaluation    one sizing-stage evaluation of 500 candidate facts through durable-rules, per candidate
  sweep 600          app.sweep over 6 layouts x 2 KV dtypes x 10 lengths x 5 utilizations (in-process, warm)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DEPS = "import pydantic, click, ruamel.yaml, rich.console, packaging.version, durable.engine"


def whole(cmds: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall time of each command, run interleaved (a, b, c, a, b, c, ...) so that machine noise
    lands on all of them alike; the first round warms the disk cache and is discarded."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for i in range(runs + 1):
        for name, cmd in cmds.items():
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, cwd=ROOT)
            if i:
                times[name].append(time.perf_counter() - t)
            if r.returncode not in (0, 3):
                raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.decode()[-400:]}")
    return {k: statistics.median(v) for k, v in times.items()}


IN_PROCESS = r"""
import json, statistics, sys, time
from planner.policy.loader import load_packset  # imports are the deps' cost, measured separately
t0 = time.perf_counter()
ps = load_packset(use_env=False)
t1 = time.perf_counter()
from planner.policy.compiler import compile_rules
for _ in range(20):
    stages = [compile_rules(ps.rules, s, ps.param_values()) for s in ("baseline", "sizing", "recommend")]
t2 = time.perf_counter()
from planner.policy import worker
from planner.policy.facts import normalise_fact
facts = [normalise_fact("candidate", f"c{i}", {"tensor_parallel_size": 1 + i % 8, "weights_fraction": (i % 100) / 99,
                                              "kv_pressure": (i % 7) / 3, "fits": i % 3 == 0}) for i in range(500)]
worker.evaluate(stages[1], facts[:1])  # start the worker and register the ruleset once
evals = []
for _ in range(5):
    t = time.perf_counter(); worker.evaluate(stages[1], facts); evals.append(time.perf_counter() - t)
from planner.app import sweep
from planner.schemas import PlanRequest
req = PlanRequest(model="meta-llama/Llama-3.1-70B-Instruct", gpu="H100", gpus=8)
grid = dict(max_model_lens=[2048 * 2**k for k in range(6)] + [12000, 24000, 48000, 96000],
            utilizations=[0.8, 0.85, 0.9, 0.92, 0.95])
rows = sweep(req, **grid)
sweeps = []
for _ in range(3):
    t = time.perf_counter(); rows = sweep(req, **grid); sweeps.append(time.perf_counter() - t)
print(json.dumps({"pack_load_s": t1 - t0, "pack_compile_s": (t2 - t1) / 20,
                  "rule_eval_per_candidate_s": statistics.median(evals) / len(facts),
                  "sweep_s": statistics.median(sweeps), "sweep_rows": len(rows)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cli = [PY, "-m", "planner.cli", "plan", "--json"]
    cap = [PY, "-m", "planner.cli", "capacity", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--rate", "20",
           "--input-len", "1000", "--output-len", "200", "--slo-ttft-ms", "1000", "--slo-itl-ms", "50", "--json"]
    w = whole({"deps": [PY, "-c", DEPS],
               "plan8": [*cli, "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100"],
               "plan671": [*cli, "--model", "deepseek-ai/DeepSeek-R1", "--gpu", "H200", "--gpus", "8"],
               "cap3": [*cap, "--gpu", "H100", "--gpu", "L40S", "--gpu", "A100"],
               "models": [PY, "-m", "planner.cli", "models", "--json"],
               "models_search": [PY, "-m", "planner.cli", "models", "qwen3", "moe"]}, args.runs)
    catalog = whole({"cap_all": cap}, max(1, args.runs // 4))["cap_all"]
    deps, plan8, plan671 = w["deps"], w["plan8"], w["plan671"]
    inner = json.loads(subprocess.run([PY, "-c", IN_PROCESS], capture_output=True, cwd=ROOT, check=True,
                                      text=True).stdout.strip().splitlines()[-1])
    figures = {
        "deps_import_s": deps, "cold_plan_8b_s": plan8, "cold_plan_671b_s": plan671,
        "pack_load_s": inner["pack_load_s"], "pack_compile_s": inner["pack_compile_s"],
        "rule_eval_per_candidate_s": inner["rule_eval_per_candidate_s"],
        f"sweep_{inner['sweep_rows']}_s": inner["sweep_s"],
        "capacity_3_gpus_s": w["cap3"], "capacity_catalog_s": catalog,
        "models_list_s": w["models"], "models_search_s": w["models_search"],
    }
    targets = {"cold_plan_8b_s": 0.5, "cold_plan_671b_s": 0.5, "rule_eval_per_candidate_s": 0.005,
               f"sweep_{inner['sweep_rows']}_s": 2.0, "capacity_3_gpus_s": 4 * plan8, "capacity_catalog_s": 6.0,
               "models_list_s": plan8, "models_search_s": plan8}  # listing the catalog: no dearer than one plan
    if args.json:
        print(json.dumps({"figures": figures, "ratio_to_deps_import": {k: v / deps for k, v in figures.items()}}))
        return 0
    print(f"{'figure':30} {'time':>12} {'x deps import':>14} {'target':>10}")
    for k, v in figures.items():
        target = f"< {targets[k] * 1000:g} ms" if k in targets else ""
        ok = "" if k not in targets else ("  ok" if v < targets[k] else "  MISSED")
        print(f"{k:30} {v * 1000:10.2f} ms {v / deps:13.2f}x {target:>10}{ok}")
    print(f"capacity over 3 GPU types = {w['cap3'] / plan8:.1f} cold 8B plans (target: at most 4)")
    print("cold plans within 3x the dependencies' import:",
          "yes" if max(plan8, plan671) <= 3 * deps else f"no ({max(plan8, plan671) / deps:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
