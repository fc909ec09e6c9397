"""Training: train state, the pmap/shard_map step, the loop with checkpoints and logging."""
