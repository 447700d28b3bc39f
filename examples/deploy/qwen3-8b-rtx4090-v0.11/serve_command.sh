#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 15411d153fbf, vLLM 0.11.0, rule packs core@0.1.0 (69da29766c9b)
# Starts the planned vLLM server on this machine (vllm must be installed).
set -euo pipefail

exec vllm serve Qwen/Qwen3-8B --max-model-len 37072 "$@"
