"""GPU resources: the MIG catalogue and what each replica requests."""
