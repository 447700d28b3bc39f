"""Shell scripts for a plan: serve_command.sh (run vLLM) and benchmark.sh (check the plan's speeds).

Pure: no I/O. benchmark.sh runs `vllm bench serve` at the planned workload against a running server
and prints measured against planned ITL, TTFT and output throughput, with whether each measurement
falls inside the planned range.
"""

from __future__ import annotations

import json
import shlex

from planner.artifacts.common import ray_head_then, ray_worker
from planner.artifacts.deploy import Deploy
from planner.artifacts.serve import device_env


def _header(d: Deploy, purpose: str) -> list[str]:
    return ["#!/usr/bin/env bash", f"# {d.stamp.line()}", f"# {purpose}", "set -euo pipefail", ""]


def _mig_guard(d: Deploy) -> list[str]:
    """A MIG plan whose capture had no slice UUID: the script refuses to start until CUDA_VISIBLE_DEVICES names it
    (without it CUDA takes whichever slice it enumerates first; NVIDIA MIG User Guide, "CUDA Device Enumeration")."""
    if not d.mig_profile or d.mig_uuid:
        return []
    return [f"# MIG slice {d.mig_profile}: the capture has no MIG UUID; `nvidia-smi -L` lists it (MIG-...)",
            f': "${{CUDA_VISIBLE_DEVICES:?set CUDA_VISIBLE_DEVICES=MIG-<UUID> of the {d.mig_profile} slice '
            '(nvidia-smi -L lists it)}"']


def serve_script(d: Deploy) -> str:
    """serve_command.sh: the plan's `vllm serve` (with the Ray cluster steps on multi-node shapes)."""
    env = device_env(",".join(d.device_ids), d.vendor) if d.device_ids and not d.launch.multi_node else []
    serve = shlex.join(["vllm", "serve", d.model, *d.args])
    if not d.launch.multi_node:
        lines = _header(d, "Starts the planned vLLM server on this machine (vllm must be installed).")
        lines += _mig_guard(d)
        lines.append(f"exec {'env ' + ' '.join(env) + ' ' if env else ''}{serve} \"$@\"")
        return "\n".join(lines) + "\n"
    nodes = d.launch.nodes
    lines = _header(d, f"Multi-node: {nodes} nodes form one Ray cluster; run `$0 worker HEAD_IP` on {nodes - 1} "
                       "node(s), then `$0 head` on the head node.")
    lines += [f"# {n}" for n in d.notes] + [
        'case "${1:-}" in',
        "  worker)",
        '    head_ip="${2:?usage: $0 worker HEAD_IP}"',
        f'    {ray_worker("${head_ip}")}',
        "    ;;",
        "  head)",
        f'    echo "starting the Ray head; the server starts once {nodes} nodes have joined" >&2',
        f"    {ray_head_then(serve, nodes)}",
        "    ;;",
        '  *) echo "usage: $0 head | $0 worker HEAD_IP" >&2; exit 2 ;;',
        "esac",
    ]
    return "\n".join(lines) + "\n"


def benchmark_script(d: Deploy) -> str:
    """benchmark.sh: measured vs planned speeds at the planned workload."""
    w = d.plan.performance.workload
    prompts = max(d.bench_min_prompts, w.concurrency * d.bench_rounds)
    planned = {k: getattr(d.plan.performance, k).model_dump()
               for k in ("itl_ms", "ttft_ms", "output_tokens_per_s_total")}
    bench = ["${VLLM:-vllm}", "bench", "serve", "--backend", "vllm", "--base-url", "${BASE_URL}",
             "--model", d.model, *(["--served-model-name", d.served_name] if d.local_dir else []),
             "--dataset-name", "random", "--random-input-len", str(w.input_len),
             "--random-output-len", str(w.output_len), "--num-prompts", str(prompts),
             "--max-concurrency", str(w.concurrency), "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl",
             "--save-result", "--result-filename", "${RESULT}"]
    # $VLLM stays unquoted on purpose: VLLM="docker compose exec vllm vllm" must split into words
    quoted = " ".join(b if b == "${VLLM:-vllm}" else f'"{b}"' if b.startswith("${") else shlex.quote(b)
                      for b in bench)
    lines = _header(d, "Measures the running server at the planned workload and compares it with the plan.")
    lines += [
        f'BASE_URL="${{BASE_URL:-http://localhost:{d.port}}}"',
        f'RESULT="${{RESULT:-benchmark-{d.stamp.plan_id}.json}}"',
        "",
        'echo "waiting for ${BASE_URL}/health ..." >&2',
        "python3 - \"$BASE_URL\" <<'PY'",
        "import sys, time, urllib.request",
        "deadline = time.time() + 3600",
        "while True:",
        "    try:",
        "        urllib.request.urlopen(sys.argv[1] + '/health', timeout=5)",
        "        break",
        "    except OSError:",
        "        if time.time() > deadline:",
        "            sys.exit('server not healthy after an hour')",
        "        time.sleep(5)",
        "PY",
        "",
        f"{quoted} \"$@\"",
        "",
        "python3 - \"$RESULT\" <<'PY'",
        "import json, sys",
        f"planned = {json.dumps(planned, sort_keys=True)}",
        "m = json.load(open(sys.argv[1]))",
        "rows = [('ITL ms (median)', m.get('median_itl_ms'), planned['itl_ms']),",
        "        ('TTFT ms (median)', m.get('median_ttft_ms'), planned['ttft_ms']),",
        "        ('output tokens/s', m.get('output_throughput'), planned['output_tokens_per_s_total'])]",
        "print(f\"{'metric':<18}{'measured':>12}{'planned':>12}{'range':>24}  inside\")",
        "for name, got, p in rows:",
        "    if got is None:",
        "        print(f'{name:<18}{\"-\":>12}'); continue",
        "    inside = p['low'] <= got <= p['high']",
        "    rng = f\"{p['low']:.1f} - {p['high']:.1f}\"",
        "    print(f\"{name:<18}{got:>12.1f}{p['expected']:>12.1f}{rng:>24}  {'yes' if inside else 'NO'}\")",
        "PY",
    ]
    return "\n".join(lines) + "\n"
