#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 98c107c4de0d, vLLM 0.11.0, rule packs core@0.2.0 (b58c50941f95)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve Qwen/Qwen3-8B --max-model-len 37072 "$@"
