#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 7c21b8668b32, vLLM 0.11.0, rule packs core@0.4.0 (e989bc24d6df)
# Measures the running server at the planned workload and compares it with the plan.
set -euo pipefail

BASE_URL="${BASE_URL:-http://localhost:8000}"
RESULT="${RESULT:-benchmark-7c21b8668b32.json}"

echo "waiting for ${BASE_URL}/health ..." >&2
python3 - "$BASE_URL" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 3600
while True:
    try:
        urllib.request.urlopen(sys.argv[1] + '/health', timeout=5)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit('server not healthy after an hour')
        time.sleep(5)
PY

${VLLM:-vllm} bench serve --backend vllm --base-url "${BASE_URL}" --model Qwen/Qwen3-8B --dataset-name random --random-input-len 2048 --random-output-len 512 --num-prompts 64 --max-concurrency 8 --ignore-eos --percentile-metrics ttft,tpot,itl --save-result --result-filename "${RESULT}" "$@"

python3 - "$RESULT" <<'PY'
import json, sys
planned = {"itl_ms": {"expected": 29.049, "high": 34.83, "low": 26.144}, "output_tokens_per_s_total": {"expected": 267.718, "high": 282.711, "low": 159.292}, "ttft_ms": {"expected": 455.692, "high": 766.018, "low": 304.402}}
m = json.load(open(sys.argv[1]))
rows = [('ITL ms (median)', m.get('median_itl_ms'), planned['itl_ms']),
        ('TTFT ms (median)', m.get('median_ttft_ms'), planned['ttft_ms']),
        ('output tokens/s', m.get('output_throughput'), planned['output_tokens_per_s_total'])]
print(f"{'metric':<18}{'measured':>12}{'planned':>12}{'range':>24}  inside")
for name, got, p in rows:
    if got is None:
        print(f'{name:<18}{"-":>12}'); continue
    inside = p['low'] <= got <= p['high']
    rng = f"{p['low']:.1f} - {p['high']:.1f}"
    print(f"{name:<18}{got:>12.1f}{p['expected']:>12.1f}{rng:>24}  {'yes' if inside else 'NO'}")
PY
