"""The plan use case, one step per module.

context   inputs -> PlanContext (version, dtype, quantization, packs run through the baseline stage) and facts
layouts   the parallel layouts vLLM could launch on the GPUs (TP x PP x DP, expert parallelism)
gate      launchability facts the pack's gate rules refuse candidates on (vLLM's own start-up checks)
settle    the staged loop: candidates -> sizing -> recommend -> decisions, until they stop changing
speed     the performance model's inputs for a configuration, and the plan's speed ranges
options   alternatives and fixes (each re-sized with the same accounting)
assemble  the PlanResponse
sweep     the whole grid, for `vllm-planner sweep`
"""
