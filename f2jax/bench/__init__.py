"""Benchmarks for f2jax: checkpoint-load memory, compile time, encode throughput.

Each benchmark is a function returning a flat dict of numbers (so tests and `--json` can use
it) plus an `f2jax bench <name>` sub-command (see `f2jax.bench.cli`) that prints a table.
"""
