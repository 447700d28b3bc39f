#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 3c326ad1fe57, vLLM 0.33.0, rule packs core@0.2.0 (a99964714b78)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve meta-llama/Llama-3.1-70B-Instruct --tensor-parallel-size 4 --data-parallel-size 2 --max-model-len 131072 "$@"
