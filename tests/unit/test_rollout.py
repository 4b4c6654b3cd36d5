"""The canary rollout state machine (traffic/rollout.py), its analysis verdicts and the rendered view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from builders import isvc

from unbusy.api import InferenceServiceStatus, SpecError
from unbusy.api.rollout import CanaryStrategy, RolloutCheck
from unbusy.api.status import RevisionTemplate, RolloutState
from unbusy.gpu.request import gpu_request
from unbusy.health import VariantState
from unbusy.health import status as health_status
from unbusy.render import render_all
from unbusy.traffic import rollout
from unbusy.traffic.analysis import Measurement, Verdict, judge
from unbusy.traffic.view import with_rollouts

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STRATEGY = CanaryStrategy.model_validate(
    {"steps": [{"weight": 10, "pauseSeconds": 60}, {"weight": 50, "pauseSeconds": 0}], "failureLimit": 2}
)
OLD = RevisionTemplate(model_version="3", model_repository="s3://models/vision", image="triton:1")
NEW = OLD.model_copy(update={"model_version": "4"})
PASSED, FAILED, NO_DATA = Verdict(True, "passed: ok"), Verdict(False, "failed: p99"), Verdict(None, "holding")


def first_revision():
    return rollout.on_spec("main", OLD, None, (), T0).revisions


def started() -> rollout.Change:
    return rollout.on_spec("main", NEW, None, first_revision(), T0)


def analyse(state, verdict=None, at=0, ready=True, settled=False, revisions=None):
    revisions = first_revision() if revisions is None else revisions
    return rollout.on_analysis(state, STRATEGY, verdict, ready, settled, revisions, T0 + timedelta(seconds=at))


def taking_traffic() -> RolloutState:
    return analyse(started().state).state


# --- on_spec: start, keep, restart, end ---------------------------------------------------


def test_the_first_template_seen_is_revision_1_and_starts_nothing():
    change = rollout.on_spec("main", OLD, None, (), T0)
    assert change.state is None and change.event is None
    assert [(r.number, r.template) for r in change.revisions] == [(1, OLD)]


def test_a_changed_template_starts_a_canary_at_no_weight():
    change = started()
    assert (change.state.phase, change.state.revision, change.state.weight) == ("Progressing", 2, 0)
    assert change.state.template == NEW
    assert change.event[1] == "RolloutStarted"


def test_the_same_template_again_changes_nothing():
    state = started().state
    assert rollout.on_spec("main", NEW, state, first_revision(), T0) == rollout.Change(state, first_revision())


def test_another_template_mid_rollout_replaces_the_canary():
    newer = NEW.model_copy(update={"image": "triton:2"})
    change = rollout.on_spec("main", newer, taking_traffic(), first_revision(), T0)
    assert (change.state.revision, change.state.weight, change.state.template) == (3, 0, newer)
    assert "replacing revision 2" in change.event[2]


def test_going_back_to_the_stable_template_ends_the_rollout():
    change = rollout.on_spec("main", OLD, taking_traffic(), first_revision(), T0)
    assert (change.state.phase, change.state.weight) == ("Failed", 0)
    assert change.event[1] == "RolloutAborted"


def test_a_failed_template_is_not_retried_by_itself():
    failed = taking_traffic().model_copy(update={"phase": "Failed", "weight": 0})
    assert rollout.on_spec("main", NEW, failed, first_revision(), T0).state is failed


# --- on_analysis ---------------------------------------------------------------------------


def test_no_weight_until_a_canary_replica_is_ready():
    assert analyse(started().state, ready=False).state == started().state
    change = analyse(started().state, ready=True, at=5)
    assert change.state.weight == 10 and change.state.step_started_at == "2026-01-01T00:00:05Z"


def test_a_pass_before_the_pause_is_over_stays_at_the_step():
    change = analyse(taking_traffic(), PASSED, at=30)
    assert (change.state.step, change.state.weight, change.state.passed) == (0, 10, 1)
    assert change.event is None


def test_a_pass_after_the_pause_moves_to_the_next_weight():
    change = analyse(taking_traffic(), PASSED, at=60)
    assert (change.state.step, change.state.weight, change.state.passed) == (1, 50, 0)
    assert change.event[1] == "RolloutStep" and "passed" in change.event[2]


@pytest.mark.parametrize("verdict", [NO_DATA, None], ids=["metrics unavailable", "no analysis"])
def test_no_verdict_holds_however_long_and_never_promotes(verdict):
    state = taking_traffic()
    for at in (60, 600, 6000):
        state = analyse(state, verdict, at=at).state
    assert (state.phase, state.step, state.weight) == ("Progressing", 0, 10)


def test_a_failed_analysis_below_the_limit_counts_and_holds():
    change = analyse(taking_traffic(), FAILED, at=60)
    assert (change.state.phase, change.state.failed, change.state.weight) == ("Progressing", 1, 10)
    assert change.event[:2] == ("Warning", "RolloutAnalysisFailed")


def test_failures_up_to_the_limit_roll_back_to_no_weight():
    once = analyse(taking_traffic(), FAILED, at=30).state
    change = analyse(once, FAILED, at=60)
    assert (change.state.phase, change.state.weight, change.state.failed) == ("Failed", 0, 2)
    assert change.event[:2] == ("Warning", "RolloutFailed") and "failed: p99" in change.event[2]


def test_the_last_step_passed_promotes_and_keeps_three_revisions():
    last = taking_traffic().model_copy(update={"step": 1, "weight": 50})
    revisions = first_revision()
    for number in (2, 3, 4):  # three earlier promotions
        promoted = last.model_copy(update={"revision": number})
        revisions = analyse(promoted, PASSED, revisions=revisions).revisions
    change = analyse(last.model_copy(update={"revision": 5}), PASSED, revisions=revisions)
    assert (change.state.phase, change.state.weight) == ("Promoting", 50)
    assert [r.number for r in change.revisions] == [3, 4, 5]
    assert rollout.stable_revision(change.revisions, "main").template == NEW


def test_promoting_ends_once_the_stable_deployment_has_rolled_out():
    promoting = taking_traffic().model_copy(update={"phase": "Promoting", "weight": 50})
    assert analyse(promoting, settled=False).state is promoting
    change = analyse(promoting, settled=True)
    assert (change.state.phase, change.state.weight) == ("Promoted", 0)
    assert change.event[1] == "RolloutPromoted"


@pytest.mark.parametrize("phase", ["Paused", "Failed", "Promoted"])
def test_analysis_moves_nothing_that_is_not_progressing(phase):
    state = taking_traffic().model_copy(update={"phase": phase})
    assert analyse(state, PASSED, at=600).state is state


# --- the user's actions --------------------------------------------------------------------


def act(state, action):
    return rollout.on_action(state, action, first_revision(), T0 + timedelta(seconds=90))


def test_pause_then_resume_restarts_the_step():
    paused = act(taking_traffic(), "pause").state
    assert paused.phase == "Paused" and paused.weight == 10
    resumed = act(paused, "resume").state
    assert (resumed.phase, resumed.passed, resumed.step_started_at) == ("Progressing", 0, "2026-01-01T00:01:30Z")


@pytest.mark.parametrize("phase", ["Progressing", "Paused"])
def test_abort_sets_weight_to_zero(phase):
    change = act(taking_traffic().model_copy(update={"phase": phase}), "abort")
    assert (change.state.phase, change.state.weight) == ("Failed", 0)


def test_promote_at_once_makes_the_canary_stable():
    change = act(taking_traffic(), "promote")
    assert change.state.phase == "Promoting"
    assert rollout.stable_revision(change.revisions, "main").number == 2


def test_an_action_that_does_not_fit_the_phase_is_ignored_and_said():
    state = taking_traffic().model_copy(update={"phase": "Promoted"})
    change = act(state, "resume")
    assert change.state is state and change.event[:2] == ("Warning", "RolloutActionIgnored")
    assert "allowed: pause, resume, abort, promote" in change.event[2]


# --- verdicts ------------------------------------------------------------------------------

CHECKS = [
    RolloutCheck(metric="p99LatencyMs", max_ratio_to_stable=1.5),
    RolloutCheck(metric="errorRatePercent", max=1),
]


def test_a_verdict_names_each_measured_value_and_its_limit():
    verdict = judge(CHECKS, Measurement({"p99LatencyMs": 140, "errorRatePercent": 0.2}, {"p99LatencyMs": 100}))
    assert verdict.passed is True
    assert verdict.message == (
        "passed: p99LatencyMs 140 ms <= 150 ms (1.5 x stable 100 ms); errorRatePercent 0.2% <= 1% (limit)"
    )


def test_one_check_over_its_limit_fails_even_with_another_unmeasured():
    verdict = judge(CHECKS, Measurement({"errorRatePercent": 7.5}, {}))
    assert verdict.passed is False and "errorRatePercent 7.5% > 1%" in verdict.message


def test_unmeasured_values_give_no_verdict():
    assert judge(CHECKS, Measurement({"p99LatencyMs": 90}, {})).passed is None  # stable unmeasured
    assert judge(CHECKS, Measurement({}, {}, error="Prometheus at x unreachable")).passed is None


# --- what is rendered ----------------------------------------------------------------------

SPEC = {
    "model": {"name": "resnet50", "repository": "s3://models/vision", "version": "4"},
    "rollout": {"canary": {"steps": [{"weight": 10}, {"weight": 50}]}},
    "routing": {"host": "svc.example.com"},
}


def _deployments(manifests):
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}


def test_a_running_canary_is_a_track_beside_the_pinned_stable_with_a_share_of_the_weight():
    service = isvc(SPEC)
    old = rollout.template(service, service.spec.effective_variants()[0]).model_copy(update={"model_version": "3"})
    revisions = rollout.on_spec("main", old, None, (), T0).revisions
    state = rollout.on_spec(
        "main", rollout.template(service, service.spec.effective_variants()[0]), None, revisions, T0
    )
    running = state.state.model_copy(update={"weight": 10})
    shown = with_rollouts(service, [running], revisions)
    assert [(v.name, v.weight, v.model_version) for v in shown.spec.effective_variants()] == [
        ("main", 90, "3"),
        ("main-canary", 10, "4"),
    ]
    manifests = render_all(shown)
    assert set(_deployments(manifests)) == {"resnet-main", "resnet-main-canary"}
    canary = next(m for m in manifests if m["kind"] == "Ingress" and m["metadata"]["name"] == "resnet-canary")
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    # Rolled back: the track goes, the stable variant keeps the old version.
    failed = running.model_copy(update={"phase": "Failed", "weight": 0})
    assert set(_deployments(render_all(with_rollouts(service, [failed], revisions)))) == {"resnet-main"}
    assert with_rollouts(service, [failed], revisions).spec.effective_variants()[0].model_version == "3"


def test_the_gateway_route_carries_the_canary_as_a_weighted_backend():
    service = isvc({**SPEC, "routing": {"host": "svc.example.com", "provider": "gateway", "gateway": {"name": "gw"}}})
    revisions = rollout.on_spec("main", OLD, None, (), T0).revisions
    state = rollout.on_spec("main", NEW, None, revisions, T0).state.model_copy(update={"weight": 50})
    route = next(m for m in render_all(with_rollouts(service, [state], revisions)) if m["kind"] == "HTTPRoute")
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("resnet-main", 50),
        ("resnet-main-canary", 50),
    ]


def test_a_canary_service_name_too_long_is_a_spec_error_naming_the_fields():
    variant = "v" * 20
    service = isvc({**SPEC, "variants": [{"name": variant, "weight": 100}]}, name="a" * 40)
    revisions = rollout.on_spec(variant, OLD, None, (), T0).revisions
    state = rollout.on_spec(variant, NEW, None, revisions, T0).state
    with pytest.raises(SpecError, match="shorten metadata.name or the variant's name"):
        with_rollouts(service, [state], revisions)


def test_status_condition_and_column_follow_the_rollout():
    service = isvc(SPEC)
    state = taking_traffic()
    assert rollout.summary([state], STRATEGY) == "main: Progressing 1/2 (10%) r2"
    assert rollout.condition([state])[:3] == ("Progressing", "True", "RolloutStep")
    failed = state.model_copy(update={"phase": "Failed"})
    assert rollout.condition([failed])[2] == "RolloutFailed"
    promoted = state.model_copy(update={"phase": "Promoted"})
    assert rollout.condition([promoted])[2] == "RolloutPromoted"
    rolling = service.model_copy(update={"status": InferenceServiceStatus(rollouts=[state])})
    gpu = gpu_request(service.spec.gpu, None)
    conditions = health_status(rolling, gpu, [VariantState("main", 100, 1, 1, 1, 1, True, True)], [], None, "", "now")
    progressing = next(c for c in conditions.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "RolloutStep")


# --- the spec's own rules (the CRD's CEL rules say the same: tests/integration) -------------


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"rollout": {"canary": {"steps": [{"weight": 50}, {"weight": 10}]}}}, "steps: the steps' weights must rise"),
        (
            {"rollout": {"canary": {"checks": [{"metric": "queueTimeMs"}]}}},
            "checks[0].max: set exactly one of max (an absolute limit) or maxRatioToStable",
        ),
        (
            {
                "rollout": {"canary": {}},
                "routing": {"host": "a.example.com"},
                "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
            },
            "spec.variants: with rollout.canary and ingress-nginx (routing.provider nginx, or no routing.gateway) only",
        ),
        (
            {"rollout": {"canary": {}}, "variants": [{"name": "a-canary", "weight": 100}]},
            "spec.variants: with rollout.canary no variant name may end in -canary",
        ),
    ],
    ids=["steps-rise", "one-limit", "nginx-one-weighted", "canary-name"],
)
def test_a_bad_strategy_is_refused_naming_the_field(spec, problem):
    with pytest.raises(SpecError) as raised:
        isvc(spec)
    assert any(problem in p for p in raised.value.problems), raised.value.problems
