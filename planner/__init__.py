"""vllm-planner: plan vLLM deployments with rule packs and an audit trail.

Imports nothing heavy so that `vllm-planner --help` stays fast.
"""

__version__ = "0.1.0"
