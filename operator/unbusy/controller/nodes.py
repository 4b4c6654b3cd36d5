"""The nodes whose replicas cannot serve, as the operator's watch of Nodes sees them (handlers.py
feeds it): deleted, or not Ready. One per process, like the metrics: every status refresh reads
it, wherever it runs from (a reconcile, a Deployment event, the resync, a rollout tick)."""

from __future__ import annotations

import threading

from unbusy.health import GONE

# A deleted node is remembered this long: Kubernetes deletes its pods within a minute or so
# (the pod garbage collector), after which no refresh needs it.
FORGET_S = 600.0


class LostNodes:
    def __init__(self) -> None:
        self._lost: dict[str, tuple[str, float]] = {}  # node -> (why, since when)
        self._lock = threading.Lock()  # kopf's handler threads and the scaling loop's share it

    def note(self, node: str, trouble: str | None, now: float) -> bool:
        """Record what the watch saw of `node`: health.node_trouble's word, GONE once deleted, None
        while Ready. True when that changed what its replicas are (lost, back, or lost otherwise)."""
        with self._lock:
            before = self._lost.get(node)
            if trouble is None:
                self._lost.pop(node, None)
            elif before is None or before[0] != trouble:
                self._lost[node] = (trouble, now)
            return (before[0] if before else None) != trouble

    def now(self, now: float) -> dict[str, str]:
        """node -> why, for every lost node (deleted ones until FORGET_S after their deletion)."""
        with self._lock:
            for node, (why, since) in list(self._lost.items()):
                if why == GONE and now - since > FORGET_S:
                    del self._lost[node]
            return {node: why for node, (why, _) in self._lost.items()}


LOST = LostNodes()
