"""GPUs: the catalog of known GPUs, nvidia-smi parsers and the live probe."""
