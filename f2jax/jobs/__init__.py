"""Jobs that drive an Encoder over a data set: teacher embedding and hard-negative mining.

They sit above both `f2jax.data` (pure I/O) and the Encoder (`f2jax.load`); the `f2jax data
teacher-embed | mine` commands and the benchmarks call them.
"""
