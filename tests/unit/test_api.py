"""The API models: defaults, cross-field rules, and errors that name the field."""

from __future__ import annotations

import pytest
from builders import isvc, manifest

from unbusy.api import SpecError, load


def problems(spec: dict) -> list[str]:
    with pytest.raises(SpecError) as error:
        isvc(spec)
    return error.value.problems


def test_defaults_follow_the_seeds():
    spec = isvc().spec
    assert (spec.rollout.max_surge, spec.rollout.max_unavailable) == ("25%", "10%")
    assert spec.alerts.p99_latency_seconds.threshold == 1.0 and spec.alerts.p99_latency_seconds.for_ == "5m"
    assert spec.alerts.gpu_memory_percent.threshold == 90 and spec.alerts.gpu_memory_percent.for_ == "3m"
    assert spec.alerts.error_rate_percent.threshold == 5
    assert spec.alerts.queue_depth.threshold == 50
    assert spec.alerts.gpu_utilization_percent.threshold == 90 and spec.alerts.gpu_utilization_percent.for_ == "5m"
    busy = spec.alerts.busy_rate_percent
    assert (busy.threshold, busy.for_, busy.severity) == (1, "5m", "warning")
    assert spec.autoscaling.demand.source == "auto"
    assert spec.autoscaling.targets.cpu_utilization_percent == 70
    assert [v.name for v in spec.effective_variants()] == ["main"]


def test_partial_alert_keeps_that_alerts_own_defaults():
    alerts = isvc({"alerts": {"queueDepth": {"threshold": 40}}}).spec.alerts
    assert alerts.queue_depth.threshold == 40 and alerts.queue_depth.for_ == "2m"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 40}]},
            "spec.variants: the weights must add up to 100",
        ),
        (
            {"variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]},
            "spec.variants: variant names must be unique",
        ),
        (
            {
                "routing": {"host": "x.example.com", "provider": "nginx"},
                "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20}],
            },
            "spec.variants: with ingress-nginx (routing.provider nginx, or no routing.gateway) at most two variants",
        ),
        ({"routing": {"host": "x.example.com", "provider": "gateway"}}, "spec.routing.gateway: gateway is required"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas: must be <= maxReplicas"),
        (
            {"variants": [{"name": "a", "weight": 100, "minReplicas": 3, "maxReplicas": 1}]},
            "spec.variants[0].minReplicas: must be <= maxReplicas",
        ),
        ({"gpu": {"count": 1, "migProfile": "1g.10gb", "product": "A100-80GB"}}, "spec.gpu: set exactly one of count"),
        ({"gpu": {"product": "A100-80GB"}}, "spec.gpu: set exactly one of count"),
        ({"gpu": {"migProfile": "1g.10gb"}}, "spec.gpu.product: required with migProfile"),
        (
            {"autoscaling": {"demand": {"source": "nginx"}}},
            "spec.autoscaling.demand.source: nginx reads the Ingresses of routing.provider nginx",
        ),
        (
            {"autoscaling": {"demand": {"source": "istio"}}, "routing": {"host": "x.example.com"}},
            "spec.autoscaling.demand.source: nginx reads the Ingresses of routing.provider nginx, envoy-gateway, "
            "istio and traefik the HTTPRoute of routing.provider gateway",
        ),
        (
            {"autoscaling": {"demand": {"source": "promql"}}},
            "spec.autoscaling.demand.query: required with source promql",
        ),
        (
            {"autoscaling": {"demand": {"source": "triton", "rejectedQuery": "sum(x)"}}},
            "spec.autoscaling.demand.query: required with source promql, and query and rejectedQuery go with",
        ),
    ],
)
def test_cross_field_rules_name_the_field(spec, expected):
    assert any(p.startswith(expected) for p in problems(spec)), problems(spec)


def test_three_weighted_variants_are_fine_through_gateway():
    variants = [{"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20}]
    routing = {"host": "x.example.com", "provider": "gateway", "gateway": {"name": "gw"}}
    assert len(isvc({"variants": variants, "routing": routing}).spec.variants) == 3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"model": {"name": "m", "repository": "http://x"}}, "spec.model.repository: String should match pattern"),
        ({"gpu": {"count": 1, "product": "V100"}}, "spec.gpu.product: must be one of 'A100-40GB'"),
        ({"gpu": {"count": 1, "colour": "red"}}, "spec.gpu.colour: unknown field"),
        (
            {"autoscaling": {"mode": "knative"}},
            "spec.autoscaling.mode: must be one of 'operator', 'hpa', 'keda' or 'none'",
        ),
        ({"rollout": {"maxSurge": "lots"}}, "spec.rollout.maxSurge: String should match pattern"),
        (
            {"autoscaling": {"demand": {"source": "envoy"}}},
            "spec.autoscaling.demand.source: must be one of 'auto', 'nginx', 'envoy-gateway', 'istio', 'traefik', "
            "'promql' or",
        ),
        (
            {"autoscaling": {"demand": {"source": "promql", "query": "sum(rate(x{svc=$svc}[1m]))"}}},
            "spec.autoscaling.demand.query: unknown placeholder $svc: use $namespace, $inferenceservice, $variant,"
            " $service, $window, or $$ for a literal $",
        ),
        (
            {
                "autoscaling": {
                    "demand": {"source": "promql", "query": "q", "rejectedQuery": 'label_replace(x, "a", "$1")'}
                }
            },
            "spec.autoscaling.demand.rejectedQuery: a $ that starts no placeholder: use $namespace",
        ),
    ],
)
def test_schema_errors_name_the_field(spec, expected):
    assert any(p.startswith(expected) for p in problems(spec)), problems(spec)


def test_missing_required_sections_are_named():
    document = manifest()
    del document["spec"]["model"]
    with pytest.raises(SpecError) as error:
        load(document)
    assert "spec.model: Field required" in error.value.problems


def test_metadata_name_must_leave_room_for_child_names():
    with pytest.raises(SpecError) as error:
        isvc(name="x" * 41)
    assert error.value.problems[0].startswith("metadata.name:")


def test_a_metric_target_of_zero_turns_it_off():
    targets = isvc({"autoscaling": {"targets": {"gpuUtilizationPercent": 0}}}).spec.autoscaling.targets
    assert (targets.gpu_utilization_percent, targets.queue_depth_per_replica) == (0, 8)


@pytest.mark.parametrize(
    ("spec", "source"),
    [
        ({}, "triton"),  # no edge Unbusy renders: Triton's served rate
        ({"routing": {"host": "x.example.com"}}, "nginx"),
        ({"routing": {"host": "x.example.com", "provider": "gateway", "gateway": {"name": "gw"}}}, "triton"),
        (
            {
                "routing": {"host": "x.example.com", "provider": "gateway", "gateway": {"name": "gw"}},
                "autoscaling": {"demand": {"source": "envoy-gateway"}},
            },
            "envoy-gateway",
        ),
        ({"autoscaling": {"demand": {"source": "promql", "query": "sum(x{svc=$service})"}}}, "promql"),
    ],
)
def test_demand_source_auto_reads_the_nginx_edge_unbusy_renders(spec, source):
    assert isvc(spec).spec.demand_source() == source


def test_a_literal_dollar_in_a_demand_template_is_written_twice():
    query = 'sum(label_replace(rate(x{svc=$service}[$window]), "y", "$$1", "z", "(.*)"))'
    demand = isvc({"autoscaling": {"demand": {"source": "promql", "query": query}}}).spec.autoscaling.demand
    assert demand.query == query


# --- spec.model.llm ------------------------------------------------------------------------

LLM = {"slo": {"ttftP99Ms": 2000}, "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000}}


def llm_model(backend: str | None = "vllm", **llm) -> dict:
    config = {"config": {"backend": backend, "maxBatchSize": 0}} if backend else {}
    return {"model": {"name": "llama", "repository": "pvc://models/llm", **config, "llm": LLM | llm}}


@pytest.mark.parametrize(
    ("backend", "engine"),
    [("vllm", "vllm"), ("tensorrtllm", "tensorrtllm"), ("python", "python"), (None, "python")],
)
def test_llm_engine_defaults_from_the_backend(backend, engine):
    model = isvc(llm_model(backend)).spec.model
    assert model.llm.engine is None and model.llm_engine() == engine


def test_llm_fields_and_their_defaults():
    llm = isvc(llm_model(kvCacheTokens=400_000, slo={"ttftP99Ms": 1500, "tpotP99Ms": 80})).spec.model.llm
    assert (llm.slo.ttft_p99_ms, llm.slo.tpot_p99_ms, llm.kv_cache_tokens) == (1500, 80, 400_000)
    assert (llm.capacity.prompt_tokens_per_second, llm.capacity.output_tokens_per_second) == (20000, 2000)
    assert isvc(llm_model()).spec.model.llm.slo.tpot_p99_ms is None
    assert isvc().spec.model.llm is None and isvc().spec.model.llm_engine() is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (llm_model("tensorrtllm", engine="vllm"), "spec.model.llm.engine: must match config.backend"),
        (llm_model("vllm", engine="python"), "spec.model.llm.engine: must match config.backend"),
        (llm_model(engine="sglang"), "spec.model.llm.engine: must be one of 'vllm', 'tensorrtllm' or 'python'"),
        (llm_model(slo={"tpotP99Ms": 100}), "spec.model.llm.slo.ttftP99Ms: Field required"),
        (llm_model(slo={"ttftP99Ms": 0}), "spec.model.llm.slo.ttftP99Ms: Input should be greater than 0"),
        (llm_model(capacity={"outputTokensPerSecond": 2000}), "spec.model.llm.capacity.promptTokensPerSecond: Field"),
        # KV blocks for tokens: 200 blocks of 16 is 3,200 tokens, not 200.
        (llm_model(kvCacheTokens=200), "spec.model.llm.kvCacheTokens: Input should be greater than or equal to 256"),
        (llm_model(tokensPerSecond=9000), "spec.model.llm.tokensPerSecond: unknown field"),
        (llm_model(profile={"kvCacheTokens": 4096, "maxBatchedTokens": 512}), "spec.model.llm.profile.step: Field"),
    ],
)
def test_llm_errors_name_the_field(spec, expected):
    assert any(p.startswith(expected) for p in problems(spec)), problems(spec)


def test_an_llm_profile_unbusy_calibrate_wrote_pastes_into_the_spec_as_is():
    import yaml

    from unbusy.serving.llm import PROFILES, LlmProfile

    document = yaml.safe_load((PROFILES / "llm-h100-llama-8b.yaml").read_text())
    profile = isvc(llm_model(profile=document["llm"])).spec.model.llm.profile
    assert LlmProfile.from_document(profile.model_dump(by_alias=True)) == LlmProfile.from_document(document)


@pytest.mark.parametrize(("backend", "engine"), [("python", "vllm"), ("python", "tensorrtllm"), ("vllm", "vllm")])
def test_an_engine_may_name_what_a_python_backend_exports(backend, engine):
    assert isvc(llm_model(backend, engine=engine)).spec.model.llm_engine() == engine


def test_an_llm_scaled_on_triton_pending_count_is_warned_of_by_field():
    (warning,) = isvc(llm_model()).spec.ignored_fields()
    assert warning.startswith("spec.autoscaling.targets.queueDepthPerReplica: not read with spec.model.llm")
    off = {"autoscaling": {"targets": {"queueDepthPerReplica": 0}}}
    assert isvc(llm_model() | off).spec.ignored_fields() == []
    assert isvc().spec.ignored_fields() == []  # not an LLM: Triton's queue is the right signal


def test_the_burst_hold_is_priced_and_the_recurrence_it_replaced_is_deprecated_not_refused():
    capacity = isvc().spec.autoscaling.capacity
    assert capacity.refusal_price_gpu_seconds == 0.02 and capacity.refusal_price() == 0.02
    assert isvc().spec.ignored_fields() == []
    old = isvc({"autoscaling": {"capacity": {"burstRecurrenceSeconds": 600}}}).spec
    assert old.autoscaling.capacity.refusal_price() == 0.02  # ignored
    (warning,) = old.ignored_fields()
    assert warning.startswith("spec.autoscaling.capacity.burstRecurrenceSeconds: deprecated and not read")
    off = isvc({"autoscaling": {"capacity": {"burstRecurrenceSeconds": 0}}}).spec
    assert off.autoscaling.capacity.refusal_price() == 0.0 and off.ignored_fields() == []  # 0 still turns it off
    assert "spec.autoscaling.capacity.refusalPriceGpuSeconds" in " ".join(
        problems({"autoscaling": {"capacity": {"refusalPriceGpuSeconds": -1}}})
    )
