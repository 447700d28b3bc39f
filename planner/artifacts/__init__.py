"""Deployment artifacts rendered from a plan: serve command (per vLLM version), compose, Kubernetes, profile."""
