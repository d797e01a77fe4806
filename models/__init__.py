"""Parametric models of parallel inference schedules (TP, SP, PP, EP, DP, KV cache).

Models build schedules with the IR only; they never import the solver."""
