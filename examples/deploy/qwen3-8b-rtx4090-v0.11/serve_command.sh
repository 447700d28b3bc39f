#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 698db06b5d27, vLLM 0.11.0, rule packs core@0.3.1 (d7b04bce63d6)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve Qwen/Qwen3-8B --max-model-len 37072 "$@"
