"""Training: losses, optimiser, mesh and sharding, train step, loop, checkpoints."""
