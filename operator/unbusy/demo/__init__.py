"""The closed loop on a local testbed: the operator, a real Prometheus and the metrics emulator,
started together; `make demo` plays a load step through it, the end-to-end tests drive it."""
