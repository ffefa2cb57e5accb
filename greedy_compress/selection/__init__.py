"""Phase 2, selection: per-layer choices that meet a target, from a dictionary (solvers,
exact-cost step, repair, Optuna search) or without one (recommendations, manual mode)."""
