#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 93de336acd2b, vLLM 0.11.0, rule packs core@0.3.0 (30efe2d30842)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve Qwen/Qwen3-8B --max-model-len 37072 "$@"
