"""Capacity planning: load model, replicas, cost and the Pareto frontier (calls planner/plan, never copies it)."""
