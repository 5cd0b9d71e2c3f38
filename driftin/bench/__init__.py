"""Benchmarks: `python -m driftin.bench kernel ...` (drift-field kernels), `... infer ...` (sampling)."""
