"""Scaling: the pure policy (policy.py), the queries it needs (promql.py) and where they are read."""
