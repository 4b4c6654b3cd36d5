"""A simulator of Triton replicas under a load trace, driven by the same scaling policy as the operator."""
