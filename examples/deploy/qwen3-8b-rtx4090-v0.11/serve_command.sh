#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 7c21b8668b32, vLLM 0.11.0, rule packs core@0.4.0 (e989bc24d6df)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve Qwen/Qwen3-8B --max-model-len 37072 "$@"
