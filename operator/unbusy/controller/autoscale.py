"""One tick of the operator's scaling loop for one InferenceService: what the fleet's read of
the cluster and of Prometheus (controller/scaler.py) says of it -> replicas, the weight on the
fallback and the status, decided purely (decide_tick: scaling/policy.py's decisions,
traffic/shedding.py's moves) -> the Deployments' scale subresource, the status in one patch, Events."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from kubernetes.dynamic.exceptions import ConflictError

from unbusy import health
from unbusy.api import InferenceService, SpecError, load
from unbusy.api.status import Learned, ScalingDecision
from unbusy.controller import fallback, rollout
from unbusy.controller.metrics import METRIC_READ_FAILURES, SCALING_DECISIONS
from unbusy.controller.reconcile import CONFLICT_ATTEMPTS
from unbusy.gpu.request import gpu_request, gpus_per_replica
from unbusy.health import VariantState
from unbusy.kube import observe
from unbusy.kube.client import CountingClient
from unbusy.kube.status import event, get_inference_service, publish_status
from unbusy.render.context import RenderContext, replica_bounds, weight
from unbusy.render.edge import demand_queries
from unbusy.render.meta import variant_name
from unbusy.scaling import startup as startups
from unbusy.scaling.demand import Demand
from unbusy.scaling.fleet import Answers, SourceError, VariantRead, llm_read
from unbusy.scaling.policy import Decision, Observation, PolicyState, decide
from unbusy.scaling.startup import PodStart
from unbusy.serving.model import from_service, saturated_batch
from unbusy.timestamps import now
from unbusy.traffic import shedding
from unbusy.traffic.rollout import holds_stable_replicas

log = logging.getLogger("unbusy")
WINDOW_S = 60  # the rate window of the scaling queries
NO_PROMETHEUS = "no Prometheus to read: start the operator with --prometheus-url (or UNBUSY_PROMETHEUS_URL)"


def _spec_capacity(isvc: InferenceService) -> tuple[float | None, float]:
    """Requests/s one replica serves by the spec's measured profile (None without one), and the
    pending requests from which a replica counts as saturated (a quarter of its queue limit)."""
    config = isvc.spec.model.config
    batching = config.dynamic_batching if config else None
    saturated = max(1.0, batching.max_queue_size / 4) if batching and batching.max_queue_size else 16.0
    return (from_service(isvc).capacity_rps if isvc.spec.model.serving else None), saturated


def _observation(
    answers: Answers | None, read: VariantRead, current: int, isvc: InferenceService, shed: int, routed: int
) -> Observation:
    """The policy's view of one variant; `shed` is the percent of traffic moved off it to the fallback
    now, `routed` the weight its routes carry."""
    if answers is None:
        return Observation(current, None, error=NO_PROMETHEUS, starts=read.starts)
    hint, saturated = _spec_capacity(isvc)
    # The rate window the samples are read over, and (a new counter) how long the demand's fills.
    read_over = {
        "window_seconds": WINDOW_S,
        "demand_fill_seconds": WINDOW_S,
        "shed_percent": shed,
        "starts": read.starts,
        "gpus_per_replica": gpus_per_replica(isvc.spec.gpu, isvc.spec.model.gpu_memory),
    }
    try:
        if read.llm is not None:
            return replace(answers.llm(read, current), **read_over)
        samples, demand, past = answers.samples(read), answers.demand(read), answers.seasonal(read)
        if demand is None and not routed:
            # The routes send it nothing (a fallback at rest), and a proxy's counter of a backend starts
            # at its first request (Traefik's, Envoy's): offered none, not unknown.
            demand = Demand(0.0, 0.0, read.demand.source, read.demand.measurable, 0.0 if read.sheds else None)
        return Observation(
            current,
            samples,
            demand=demand,
            capacity_hint=hint,
            saturated_pending=saturated,
            seasonal_rps=past,
            full_batch=saturated_batch(isvc.spec.model.config),
            **read_over,
        )
    except SourceError as error:
        METRIC_READ_FAILURES.inc()
        return Observation(current, None, error=str(error), starts=read.starts)


def _views(body: dict[str, Any]) -> tuple[InferenceService, InferenceService]:
    """The InferenceService as planned (a running canary is scaled like any variant) and with the
    weights the routes carry now."""
    planned = rollout.view(load(body))
    return planned, shedding.routed(planned)


@dataclass(frozen=True)
class Look:
    """One InferenceService as a fleet tick finds it, before Prometheus is read. It keeps no
    model: a tick holds the Looks of its whole fleet at once, and each model costs tens of KB,
    so tick() loads them again, one InferenceService at a time."""

    body: dict[str, Any]
    live: dict[str, VariantState]
    reads: dict[str, VariantRead]  # of each variant whose Deployment exists (reconcile creates it first)


def look(body: dict[str, Any], children: observe.Fleet) -> Look | None:
    """What the tick must read of this InferenceService; None while its spec is invalid
    (reconcile reports it; nothing to scale until it is fixed)."""
    try:
        _, isvc = _views(body)
    except SpecError:
        return None
    namespace, name = isvc.metadata.namespace, isvc.metadata.name
    routed = {v.name: weight(v, RenderContext()) for v in isvc.spec.effective_variants()}
    live = {s.name: s for s in children.variant_states(namespace, name, routed, {})}
    mig = gpu_request(isvc.spec.gpu, isvc.spec.model.gpu_memory).mig_profile is not None
    at = time.time()
    pods = {variant: children.live_pods(namespace, name, variant) for variant in live}
    reads = {
        variant: VariantRead(
            namespace,
            isvc.spec.model.name,
            mig,
            children.pod_readiness(namespace, name, variant),
            demand_queries(isvc, variant, share=routed[variant] / 100, window_seconds=WINDOW_S),
            isvc.spec.autoscaling.seasonal if isvc.spec.autoscaling.seasonal.enabled else None,
            llm_read(isvc, variant, routed[variant] / 100, WINDOW_S),
            {p.name: at - p.ready_since for p in pods[variant] if p.ready_since},
            tuple(PodStart(p.name, p.created, p.ready_since) for p in pods[variant]),
            isvc.spec.fallback is not None,
        )
        for variant, state in live.items()
        if state.exists
    }
    return Look(body, live, reads)


@dataclass(frozen=True)
class Tick:
    interval: float  # seconds until the next tick
    reroute: dict[str, Any] | None = None  # the object as written when the routes' weights moved


INVALID = Tick(30.0)  # an invalid spec is looked at again after this long


@dataclass(frozen=True)
class Decided:
    """What one tick decided for an InferenceService, before anything is written."""

    decisions: dict[str, Decision]  # the policy's, of each variant read
    scaled: tuple[ScalingDecision, ...]  # the Deployments whose replicas change, in the spec's order
    shift: shedding.Shift | None  # the weight on the fallback; None without one, or nothing decided
    learned: tuple[Learned, ...] = ()  # each variant's learned capacity and start-up

    def status(self, body: dict[str, Any], planned: InferenceService, stamp: str) -> dict[str, Any]:
        """The status to write over `body`'s: the ScalingActive condition, the last scaling, the moves."""
        fresh = [health.scaling_condition(self.decisions)]
        generation = body["metadata"].get("generation")
        status: dict[str, Any] = {
            "conditions": health.merged_wire_conditions(body.get("status") or {}, fresh, stamp, generation)
        }
        if self.scaled:
            status["lastScaling"] = self.scaled[-1].to_wire()
        if self.shift is not None:
            status |= shedding.to_status(planned, self.shift.plan.moved)
        status["learned"] = [entry.to_wire() for entry in self.learned]
        return status


def decide_tick(
    planned: InferenceService,
    isvc: InferenceService,
    observed: dict[str, tuple[VariantRead, Observation]],
    live: dict[str, VariantState],
    states: dict[str, PolicyState],
    at: float,
    stamp: str,
) -> Decided:
    """Replicas for every variant read and the weight shed to the fallback (pure). `planned` is
    the service as planned, `isvc` with the weights the routes carry now, `states` the policy's
    state of the last tick."""
    rollouts = {s.variant: s for s in (isvc.status.rollouts if isvc.status else [])}
    decisions: dict[str, Decision] = {}
    scaled = []
    for variant in isvc.spec.effective_variants():
        if variant.name not in observed:
            continue
        state, (read, observation) = live[variant.name], observed[variant.name]
        bounds = replica_bounds(isvc, variant)
        decision = decide(observation, isvc.spec.autoscaling, bounds, states.get(variant.name, PolicyState()), at)
        decisions[variant.name] = decision
        if decision.replicas < state.desired and holds_stable_replicas(rollouts.get(variant.name)):
            continue  # the canary may yet be rolled back onto it
        if decision.replicas != state.desired:
            scaled.append(
                ScalingDecision(
                    time=stamp,
                    variant=variant.name,
                    from_replicas=state.desired,
                    to_replicas=decision.replicas,
                    reason=decision.reason,
                    demand_source=read.demand.source,
                    capacity=_capacity_text(decision, observation.unit),
                    overload_measurable=read.demand.measurable,
                    floor=decision.floor,
                )
            )
    shift = None
    if isvc.spec.fallback is not None and decisions:
        # The fallback is sized in requests (fallback.rpsPerReplica): an LLM's tokens are counted back into them.
        capacities = {
            n: _in_requests(observed[n][1].demand, capacity)
            for n, d in decisions.items()
            if (capacity := d.metrics.get("capacity_rps"))
        }
        total = shedding.offered([o.demand.requests() if o.demand else None for _, o in observed.values()])
        shift = shedding.shift(planned, {n: s.ready for n, s in live.items()}, capacities, total, at)
    spec_startup = isvc.spec.autoscaling.capacity.startup_seconds
    learned = tuple(_learned(n, d, observed[n][1].unit, spec_startup) for n, d in decisions.items())
    return Decided(decisions, tuple(scaled), shift, learned)


def tick(api: CountingClient, seen: Look, answers: Answers | None, states: dict[str, PolicyState]) -> Tick:
    """Decide replicas for every variant and the weight shed to the fallback (decide_tick), then
    write them: each Deployment's scale, the status in one patch, the Events."""
    body, live = seen.body, seen.live
    planned, isvc = _views(body)
    namespace, name = isvc.metadata.namespace, isvc.metadata.name
    shed = {m.variant: m.percent for m in shedding.recorded(planned)}
    observed = {
        variant: (
            read,
            _observation(answers, read, live[variant].desired, isvc, shed.get(variant, 0), live[variant].weight),
        )
        for variant, read in seen.reads.items()
    }
    if isvc.spec.fallback is not None:
        observed = shedding.at_planned_weights(observed, planned)
    stamp = now()
    decided = decide_tick(planned, isvc, observed, live, states, time.time(), stamp)
    states.update((variant, decision.state) for variant, decision in decided.decisions.items())
    for scaling in decided.scaled:
        observe.scale_deployment(api, namespace, variant_name(isvc, scaling.variant), scaling.to_replicas)
        direction = "up" if scaling.to_replicas > scaling.from_replicas else "down"
        SCALING_DECISIONS.labels(direction).inc()
        log.info("%s/%s: variant %s scaled %s: %s", namespace, name, scaling.variant, direction, scaling.reason)
        event(api, body, "Normal", "Scaled", f"variant {scaling.variant}: {scaling.reason}")
    interval = float(isvc.spec.autoscaling.interval_seconds)
    if not decided.decisions:
        return Tick(interval)
    written = _publish(api, body, decided, planned, stamp)
    if decided.shift is None:
        return Tick(interval)
    fallback.announce(api, written, planned, decided.shift)
    return Tick(interval, written if decided.shift.rerouted else None)


def _in_requests(demand: Demand | None, rate: float) -> float:
    return demand.in_requests(rate) if demand is not None else rate


def _capacity_text(decision: Decision, unit: str) -> str | None:
    capacity = decision.metrics.get("capacity_rps")
    return f"{capacity:,.0f} {unit}/replica" if capacity else None


def _learned(variant: str, decision: Decision, unit: str, spec: int | None) -> Learned:
    """status.learned of one variant, to 3 figures and whole seconds: the status is written only
    when it changes, so a reading moving a little does not write it every tick."""
    capacity, found = decision.state.capacity, decision.state.startup.seconds
    return Learned(
        variant=variant,
        capacity=float(f"{capacity:.3g}") if capacity else None,
        capacity_unit=unit,
        startup_seconds=None if found is None else round(found),
        startup_used=startups.used(spec, decision.state.startup),
    )


def _publish(
    api: CountingClient, body: dict[str, Any], decided: Decided, planned: InferenceService, stamp: str
) -> dict[str, Any]:
    """Write the tick's status in one patch; returns the object as it now is. Only while the object
    is as read: kopf's body may lag a status that a reconcile just wrote, and conditions merged into
    a stale copy would put its older Ready back. On a conflict the status is merged again over the
    object as it now is (only this loop writes the fallback's moves, so they still hold)."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            return publish_status(api, body, decided.status(body, planned, stamp), guarded=True) or body
        except ConflictError:
            current = get_inference_service(api, namespace, name)
            if current is None or attempt == CONFLICT_ATTEMPTS - 1:
                raise
            body = current
    return body
