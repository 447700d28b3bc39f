#!/usr/bin/env bash
# Regenerates the example deployments the README shows (run from the repository root after a pack change).
set -euo pipefail
cd "$(dirname "$0")"
vllm-planner generate --force -o llama-3.1-70b-8xh100 --model meta-llama/Llama-3.1-70B-Instruct --gpu H100 --gpus 8
vllm-planner generate --force -o deepseek-r1-2x8xh100 --model deepseek-ai/DeepSeek-R1 --gpu H100 --nodes 2 --gpus-per-node 8
vllm-planner generate --force -o qwen3-8b-rtx4090-v0.11 --model Qwen/Qwen3-8B --gpu "RTX 4090" --vllm-version 0.11.0 \
  --concurrency 8 --input-len 2048 --output-len 512
