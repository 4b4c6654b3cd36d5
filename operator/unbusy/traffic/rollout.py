"""The canary rollout of one variant as a state machine (pure: the caller passes the time).

    (none) --spec changes--> Progressing --every step passed--> Promoting --stable rolled out--> Promoted
                              |   ^  \\--failureLimit analyses failed, or abort--> Failed
                       pause  v   | resume
                              Paused --promote--> Promoting

A rollout starts when the variant's template (model version, repository, image, model config)
differs from its stable revision's. The canary takes no traffic until one of its replicas is
ready; then each step's weight for at least the step's pauseSeconds and one passed analysis.
No verdict (metrics unavailable, no requests) holds the step: never promote blind.
Promoting makes the canary's template the stable one (the stable Deployment rolls to it while
the canary keeps its weight); once the stable Deployment has rolled out the canary goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from unbusy.api import InferenceService, Variant
from unbusy.api.rollout import CanaryStrategy
from unbusy.api.status import Revision, RevisionTemplate, RolloutState
from unbusy.timestamps import parse, stamp
from unbusy.traffic.analysis import Verdict

REVISIONS_KEPT = 3
ACTIVE = ("Progressing", "Paused", "Promoting")  # phases in which the canary runs
ACTIONS = ("pause", "resume", "abort", "promote")


def template(isvc: InferenceService, variant: Variant) -> RevisionTemplate:
    """What the variant serves as the spec asks now."""
    spec = isvc.spec
    return RevisionTemplate(
        model_version=variant.model_version or spec.model.version,
        model_repository=variant.model_repository or spec.model.repository,
        image=variant.image or spec.triton.image,
        config=variant.config or spec.model.config,
    )


def _since(state: RolloutState, now: datetime) -> float:
    started = parse(state.step_started_at)
    return (now - started).total_seconds()


@dataclass(frozen=True)
class Change:
    """A transition: the new state, the revisions to keep, and what to tell the user (None: nothing new)."""

    state: RolloutState | None
    revisions: tuple[Revision, ...]
    event: tuple[str, str, str] | None = None  # (Normal | Warning, reason, message)


def stable_revision(revisions: tuple[Revision, ...], variant: str) -> Revision | None:
    return max((r for r in revisions if r.variant == variant), key=lambda r: r.number, default=None)


def _promoted(revisions: tuple[Revision, ...], state: RolloutState, now: datetime) -> tuple[Revision, ...]:
    """The canary's template becomes the stable revision; the oldest beyond REVISIONS_KEPT go."""
    new = Revision(variant=state.variant, number=state.revision, template=state.template, promoted_at=stamp(now))
    mine = [r for r in revisions if r.variant == state.variant] + [new]
    others = [r for r in revisions if r.variant != state.variant]
    return tuple(others + mine[-REVISIONS_KEPT:])


def on_spec(
    variant: str,
    wanted: RevisionTemplate,
    state: RolloutState | None,
    revisions: tuple[Revision, ...],
    now: datetime,
) -> Change:
    """What a spec (re)read means for the variant's rollout: start, restart, end or nothing."""
    stable = stable_revision(revisions, variant)
    if stable is None:  # the first revision the operator sees is stable as it is
        first = Revision(variant=variant, number=1, template=wanted, promoted_at=stamp(now))
        return Change(state, (*revisions, first))
    unchanged = Change(state, revisions)
    if wanted == stable.template:
        if state is None or state.phase not in ("Progressing", "Paused"):
            return unchanged
        ended = state.model_copy(
            update={
                "phase": "Failed",
                "weight": 0,
                "step_started_at": stamp(now),
                "message": f"aborted: the spec went back to revision {stable.number}; canary removed",
            }
        )
        return Change(ended, revisions, ("Normal", "RolloutAborted", f"variant {variant}: {ended.message}"))
    if state is not None and state.template == wanted:
        return unchanged  # the rollout of this template goes on (or stays Failed: not retried by itself)
    number = max([r.number for r in revisions if r.variant == variant] + [state.revision if state else 0]) + 1
    started = RolloutState(
        variant=variant,
        phase="Progressing",
        revision=number,
        template=wanted,
        step_started_at=stamp(now),
        message="waiting for a ready canary replica",
    )
    replaced = f" (replacing revision {state.revision}'s canary)" if state and state.phase in ACTIVE else ""
    message = f"variant {variant}: revision {number} starts as a canary beside revision {stable.number}{replaced}"
    return Change(started, revisions, ("Normal", "RolloutStarted", message))


def _event(state: RolloutState, reason: str, kind: str = "Normal") -> tuple[str, str, str]:
    return kind, reason, f"variant {state.variant} revision {state.revision}: {state.message}"


def on_action(state: RolloutState, action: str, revisions: tuple[Revision, ...], now: datetime) -> Change:
    """A user's pause, resume, abort or promote (the serving.unbusy.dev/rollout annotation)."""
    phase, at = state.phase, stamp(now)
    if action == "pause" and phase == "Progressing":
        paused = state.model_copy(update={"phase": "Paused", "message": "paused by the user"})
        return Change(paused, revisions, _event(paused, "RolloutPaused"))
    if action == "resume" and phase == "Paused":
        # The step starts again: its pause counts analyses seen since the resume.
        resumed = state.model_copy(
            update={"phase": "Progressing", "step_started_at": at, "passed": 0, "message": "resumed by the user"}
        )
        return Change(resumed, revisions, _event(resumed, "RolloutResumed"))
    if action == "abort" and phase in ("Progressing", "Paused"):
        failed = state.model_copy(
            update={"phase": "Failed", "weight": 0, "step_started_at": at, "message": "aborted by the user"}
        )
        return Change(failed, revisions, _event(failed, "RolloutFailed", "Warning"))
    if action == "promote" and phase in ("Progressing", "Paused"):
        promoting = state.model_copy(
            update={"phase": "Promoting", "step_started_at": at, "message": "promoted by the user"}
        )
        return Change(promoting, _promoted(revisions, state, now), _event(promoting, "RolloutPromoting"))
    return Change(
        state,
        revisions,
        (
            "Warning",
            "RolloutActionIgnored",
            f"variant {state.variant}: {action} does "
            f"nothing in phase {phase}; allowed: {', '.join(ACTIONS)} while it runs",
        ),
    )


def on_analysis(
    state: RolloutState,
    strategy: CanaryStrategy,
    verdict: Verdict | None,
    canary_ready: bool,
    stable_rolled_out: bool,
    revisions: tuple[Revision, ...],
    now: datetime,
) -> Change:
    """One analysis interval. `verdict` is None while the canary has no traffic yet;
    `stable_rolled_out`: the stable Deployment runs its latest template with every replica ready."""
    at = stamp(now)
    if state.phase == "Promoting":
        if not stable_rolled_out:
            return Change(state, revisions)
        done = state.model_copy(
            update={
                "phase": "Promoted",
                "weight": 0,
                "step_started_at": at,
                "message": "promoted: the stable Deployment serves it; canary removed",
            }
        )
        return Change(done, revisions, _event(done, "RolloutPromoted"))
    if state.phase != "Progressing":
        return Change(state, revisions)
    step = strategy.steps[min(state.step, len(strategy.steps) - 1)]
    if state.weight == 0:
        if not canary_ready:
            return Change(state, revisions)
        first = state.model_copy(
            update={
                "weight": step.weight,
                "step_started_at": at,
                "passed": 0,
                "message": f"step {state.step + 1}/{len(strategy.steps)}: canary ready, takes {step.weight}%",
            }
        )
        return Change(first, revisions, _event(first, "RolloutStep"))
    if verdict is None or verdict.passed is None:
        message = verdict.message if verdict else "holding: no analysis yet"
        held = state.model_copy(update={"message": message})
        return Change(held, revisions, None if held.message == state.message else _event(held, "RolloutHeld"))
    if verdict.passed is False:
        failed = state.failed + 1
        if failed >= strategy.failure_limit:
            rolled_back = state.model_copy(
                update={
                    "phase": "Failed",
                    "weight": 0,
                    "failed": failed,
                    "step_started_at": at,
                    "message": f"rolled back after {failed} failed analyses: {verdict.message}",
                }
            )
            return Change(rolled_back, revisions, _event(rolled_back, "RolloutFailed", "Warning"))
        worse = state.model_copy(
            update={"failed": failed, "message": f"analysis {failed}/{strategy.failure_limit} {verdict.message}"}
        )
        return Change(worse, revisions, _event(worse, "RolloutAnalysisFailed", "Warning"))
    passed = state.passed + 1
    if _since(state, now) < step.pause_seconds:
        return Change(state.model_copy(update={"passed": passed, "message": verdict.message}), revisions)
    if state.step + 1 >= len(strategy.steps):
        promoting = state.model_copy(
            update={
                "phase": "Promoting",
                "passed": passed,
                "step_started_at": at,
                "message": f"every step passed, promoting: {verdict.message}",
            }
        )
        return Change(promoting, _promoted(revisions, state, now), _event(promoting, "RolloutPromoting"))
    following = strategy.steps[state.step + 1]
    advanced = state.model_copy(
        update={
            "step": state.step + 1,
            "weight": following.weight,
            "passed": 0,
            "step_started_at": at,
            "message": f"step {state.step + 2}/{len(strategy.steps)}: canary takes {following.weight}%; "
            f"step {state.step + 1} {verdict.message}",
        }
    )
    return Change(advanced, revisions, _event(advanced, "RolloutStep"))


def holds_stable_replicas(state: RolloutState | None) -> bool:
    """While a canary runs, the stable variant keeps its replicas whatever traffic it loses:
    a rollback must find it as it was."""
    return state is not None and state.phase in ACTIVE


def summary(states: list[RolloutState], strategy: CanaryStrategy | None) -> str:
    """For kubectl get: e.g. 'main: Progressing 2/4 (25%)'."""
    steps = len(strategy.steps) if strategy else 0
    parts = []
    for s in states:
        where = f" {s.step + 1}/{steps} ({s.weight}%)" if s.phase in ("Progressing", "Paused") and steps else ""
        parts.append(f"{s.variant}: {s.phase}{where} r{s.revision}")
    return ", ".join(parts)


def condition(states: list[RolloutState]) -> tuple[str, str, str, str] | None:
    """The Progressing condition while rollouts exist: the running ones, else the one that ended last."""
    if not states:
        return None
    running = [s for s in states if s.phase in ACTIVE]
    if running:
        message = "; ".join(f"variant {s.variant} revision {s.revision} {s.phase}: {s.message}" for s in running)
        return "Progressing", "True", "RolloutStep", message
    last = max(states, key=lambda s: s.step_started_at)
    reason = "RolloutPromoted" if last.phase == "Promoted" else "RolloutFailed"
    return "Progressing", "False", reason, f"variant {last.variant} revision {last.revision}: {last.message}"
