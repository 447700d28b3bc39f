#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 51fdddfb842e, vLLM 0.11.0, rule packs core@0.2.0 (48cd1eeaf58c)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve Qwen/Qwen3-8B --max-model-len 37072 "$@"
