#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 96c1f6849bc5, vLLM 0.33.0, rule packs core@0.4.0 (e989bc24d6df)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve meta-llama/Llama-3.1-70B-Instruct --tensor-parallel-size 4 --data-parallel-size 2 --max-model-len 131072 "$@"
