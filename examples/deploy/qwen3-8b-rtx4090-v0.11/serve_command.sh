#!/usr/bin/env bash
# vllm-planner 0.1.0, plan aeb5857071b3, vLLM 0.11.0, rule packs core@0.3.2 (6eb948b3016f)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve Qwen/Qwen3-8B --max-model-len 37072 "$@"
