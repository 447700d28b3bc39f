#!/usr/bin/env bash
# vllm-planner 0.1.0, plan 4f350c987903, vLLM 0.33.0, rule packs core@0.4.0 (e989bc24d6df)
# Multi-node: 2 nodes form one Ray cluster; run `$0 worker HEAD_IP` on 1 node(s), then `$0 head` on the head node.
set -euo pipefail

# each replica spans 2 nodes (TP 8 x PP 2 = 16 GPUs) on a Ray cluster
case "${1:-}" in
  worker)
    head_ip="${2:?usage: $0 worker HEAD_IP}"
    until ray start --block --address=${head_ip}:6379; do sleep 5; done
    ;;
  head)
    echo "starting the Ray head; the server starts once 2 nodes have joined" >&2
    ray start --head --port=6379 && until python3 -c 'import ray, sys; ray.init(address="auto", logging_level="ERROR"); sys.exit(0 if sum(n["Alive"] for n in ray.nodes()) >= 2 else 1)' >/dev/null 2>&1; do sleep 5; done && exec vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 8 --pipeline-parallel-size 2 --distributed-executor-backend ray --max-model-len 163840
    ;;
  *) echo "usage: $0 head | $0 worker HEAD_IP" >&2; exit 2 ;;
esac
