"""The serving model of one replica, pure: Triton's dynamic batching, capacity and GPU reading (model.py,
batcher.py), measured profiles (profiles/). The operator, the policy and the simulator all read it here,
so the operator never imports the simulator."""
