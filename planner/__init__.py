"""vllm-planner: plan vLLM deployments with rule packs and an audit trail.

Imports nothing heavy so that `vllm-planner --help` stays fast.
"""

import os as _os

__version__ = "0.1.0"

# pydantic scans every installed package's entry points for plugins at import (~30 ms through
# importlib.metadata); a CLI has no use for them. A user who sets the variable keeps their choice.
_os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
