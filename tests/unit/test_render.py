"""Renderers: every example renders to valid, deterministic objects with the fleet's essentials."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from builders import example_documents, isvc
from builders import manifest as isvc_document

import schemas
from unbusy.api import SpecError, load
from unbusy.render import RenderContext, render_all
from unbusy.render.model_config import to_pbtxt

EXAMPLES = example_documents()


def by_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def triton(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(("name", "document"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_every_example_renders_to_valid_objects(name, document):
    manifests = render_all(load(document))
    assert manifests
    for manifest in manifests:
        schemas.validate(manifest)


@pytest.mark.parametrize(("name", "document"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_rendering_is_deterministic(name, document):
    first = json.dumps(render_all(load(document)))
    assert all(json.dumps(render_all(load(document))) == first for _ in range(3))


def test_every_child_carries_the_operator_labels():
    for _, document in EXAMPLES:
        for manifest in render_all(load(document)):
            labels = manifest["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "unbusy"
            assert labels["serving.unbusy.dev/inferenceservice"] == document["metadata"]["name"]
            assert "ownerReferences" not in manifest["metadata"]  # kube/ adds them; render is owner-neutral


def test_deployment_essentials():
    service = isvc({"gpu": {"count": 2, "product": "H100-80GB"}, "autoscaling": {"mode": "none"}})
    (deployment,) = by_kind(render_all(service), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = triton(deployment)
    assert [p["containerPort"] for p in container["ports"]] == [8000, 8001, 8002]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900  # model loading
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "10%"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["terminationGracePeriodSeconds"] == 60
    assert "--model-repository=s3://models/vision" in container["args"]
    assert "--model-control-mode=explicit" in container["args"]
    assert "--load-model=resnet50" in container["args"]
    assert deployment["metadata"]["name"] == "resnet-main"


def test_mig_replicas_request_the_slice():
    (deployment,) = by_kind(render_all(load(dict(EXAMPLES)["llm-mig-auto.yaml"])), "Deployment")
    assert triton(deployment)["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    assert "nvidia.com/gpu" not in triton(deployment)["resources"]["limits"]


def test_pvc_repository_is_mounted_read_only():
    (deployment,) = by_kind(render_all(load(dict(EXAMPLES)["llm-mig-auto.yaml"])), "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-repository"]["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    assert "--model-repository=/models/llm" in triton(deployment)["args"]


def test_replicas_follow_the_autoscaling_mode():
    def replicas(spec, ctx=None):
        return [d["spec"].get("replicas") for d in by_kind(render_all(isvc(spec), ctx), "Deployment")]

    two = [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]
    assert replicas({"autoscaling": {"mode": "hpa"}}) == [None]  # the HPA owns replicas
    assert replicas({"autoscaling": {"mode": "operator", "minReplicas": 2}}) == [2]
    assert replicas({"autoscaling": {"mode": "operator"}}, RenderContext(replicas={"main": 5})) == [5]
    assert replicas({"autoscaling": {"mode": "none"}, "replicas": 10, "variants": two}) == [9, 1]
    # Split by weight, but never below a variant's minimum.
    assert replicas({"autoscaling": {"mode": "none", "minReplicas": 2}, "replicas": 4, "variants": two}) == [4, 2]


def test_services_per_variant_and_one_stable():
    two = [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]
    services = by_kind(render_all(isvc({"variants": two})), "Service")
    assert [s["metadata"]["name"] for s in services] == ["resnet", "resnet-stable", "resnet-canary"]
    assert services[0]["spec"]["selector"] == {"serving.unbusy.dev/inferenceservice": "resnet"}
    assert services[2]["spec"]["selector"]["serving.unbusy.dev/variant"] == "canary"


def test_nginx_canary_split():
    manifests = render_all(load(dict(EXAMPLES)["canary-nginx.yaml"]))
    primary, canary = by_kind(manifests, "Ingress")
    backend = primary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "bert-qa-stable"
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "bert-qa-canary"


def test_nginx_edge_annotations():
    (ingress,) = by_kind(render_all(load(dict(EXAMPLES)["resnet50-hpa.yaml"])), "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/limit-rps"] == "200"
    assert annotations["nginx.ingress.kubernetes.io/limit-connections"] == "100"
    assert annotations["nginx.ingress.kubernetes.io/load-balance"] == "ewma"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "60"
    assert ingress["spec"]["tls"] == [{"hosts": ["resnet.example.com"], "secretName": "resnet-tls"}]


def test_weights_from_the_context_move_traffic():
    two = [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]
    service = isvc({"variants": two, "routing": {"host": "a.example.com"}})
    ingresses = by_kind(render_all(service, RenderContext(weights={"stable": 100, "canary": 0})), "Ingress")
    assert [i["metadata"]["name"] for i in ingresses] == ["resnet"]


def test_gateway_three_way_split_with_fallback():
    (route,) = by_kind(render_all(load(dict(EXAMPLES)["fallback-gateway.yaml"])), "HTTPRoute")
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("chat-large", 80),
        ("chat-candidate", 20),
        ("chat-fallback", 0),
    ]
    assert route["spec"]["parentRefs"][0] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "inference-gateway",
        "namespace": "gateway-system",
        "sectionName": "https",
    }


GATEWAY_ROUTING = {"host": "a.example.com", "gateway": {"name": "edge"}}
RATE_LIMIT = {"group": "traefik.io", "kind": "Middleware", "name": "ratelimit"}


def routes(service) -> tuple[list[dict], list[dict]]:
    manifests = render_all(service)
    return by_kind(manifests, "HTTPRoute"), by_kind(manifests, "Ingress")


def test_a_named_gateway_makes_the_gateway_api_the_provider():
    route, ingresses = routes(isvc({"routing": GATEWAY_ROUTING}))
    assert len(route) == 1 and not ingresses
    # A manifest written when ingress-nginx was the default names no Gateway: it keeps its Ingress.
    route, ingresses = routes(isvc({"routing": {"host": "a.example.com"}}))
    assert not route and [i["metadata"]["name"] for i in ingresses] == ["resnet"]
    # One the API server stored with that default (provider: nginx) keeps it too, and is told why
    # its Gateway is not used.
    pinned = isvc({"routing": GATEWAY_ROUTING | {"provider": "nginx"}})
    route, ingresses = routes(pinned)
    assert not route and ingresses
    assert pinned.spec.ignored_fields() == [
        "spec.routing.gateway: not read with routing.provider nginx: remove provider to route through the Gateway API"
    ]


def test_the_http_route_retries_503s_and_carries_the_implementations_filters():
    (route,) = by_kind(render_all(isvc({"routing": GATEWAY_ROUTING | {"extensionFilters": [RATE_LIMIT]}})), "HTTPRoute")
    schemas.validate(route)  # the Gateway API's standard channel: retry is in it since v1.7.0
    (rule,) = route["spec"]["rules"]
    assert rule["retry"] == {"codes": [503], "attempts": 1}
    assert rule["timeouts"] == {"request": "60s"}
    assert rule["filters"] == [{"type": "ExtensionRef", "extensionRef": RATE_LIMIT}]
    (route,) = by_kind(render_all(isvc({"routing": GATEWAY_ROUTING | {"retriesOn503": 0}})), "HTTPRoute")
    assert "retry" not in route["spec"]["rules"][0] and "filters" not in route["spec"]["rules"][0]


@pytest.mark.parametrize(
    ("retries", "on", "tries"),
    [(1, "error timeout http_503", "2"), (3, "error timeout http_503", "4"), (0, "error timeout", "1")],
)
def test_nginx_retries_a_503_as_often_as_the_route_says(retries, on, tries):
    (ingress,) = by_kind(render_all(isvc({"routing": {"host": "a.example.com", "retriesOn503": retries}})), "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-next-upstream"] == on
    assert annotations["nginx.ingress.kubernetes.io/proxy-next-upstream-tries"] == tries


def test_what_an_http_route_cannot_carry_is_named():
    limited = GATEWAY_ROUTING | {"rateLimit": {"rps": 10}, "sessionAffinity": "cookie"}
    problems = isvc({"routing": limited}).spec.ignored_fields()
    assert [p.split(":")[0] for p in problems] == ["spec.routing.rateLimit", "spec.routing.sessionAffinity"]
    assert all("use your implementation's policy (docs/routing.md)" in p for p in problems)
    nginx = isvc({"routing": {"host": "a.example.com", "provider": "nginx", "extensionFilters": [RATE_LIMIT]}})
    assert [p.split(":")[0] for p in nginx.spec.ignored_fields()] == ["spec.routing.extensionFilters"]


def test_hpa_metrics_and_behaviour():
    (hpa,) = by_kind(render_all(load(dict(EXAMPLES)["resnet50-hpa.yaml"])), "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 8)
    kinds = [m["type"] for m in spec["metrics"]]
    assert kinds == ["External", "Pods", "Resource"]
    assert spec["metrics"][0]["external"]["target"] == {"type": "AverageValue", "averageValue": "16"}
    assert spec["metrics"][2]["resource"]["target"]["averageUtilization"] == 70
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_no_hpa_outside_hpa_mode():
    assert not by_kind(render_all(isvc({"autoscaling": {"mode": "operator"}})), "HorizontalPodAutoscaler")


def test_pdb_per_variant():
    (pdb,) = by_kind(render_all(isvc()), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert not by_kind(render_all(isvc({"disruption": {"enabled": False}})), "PodDisruptionBudget")


def test_managed_model_config():
    manifests = render_all(load(dict(EXAMPLES)["queue-depth-operator.yaml"]))
    (config_map,) = by_kind(manifests, "ConfigMap")[:1]
    pbtxt = config_map["data"]["config.pbtxt"]
    assert 'name: "yolo"' in pbtxt and 'backend: "tensorrt"' in pbtxt and "max_batch_size: 16" in pbtxt
    assert "preferred_batch_size: [4, 8, 16]" in pbtxt
    assert "max_queue_size: 64" in pbtxt and "timeout_action: REJECT" in pbtxt
    assert "priority_levels: 2" in pbtxt
    config = json.loads(config_map["data"]["config.json"])
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 64
    (deployment,) = by_kind(manifests, "Deployment")
    # The postStart hook loads the model with this config instead of --load-model.
    assert "lifecycle" in triton(deployment)
    assert not any(a.startswith("--load-model") for a in triton(deployment)["args"])


def test_pbtxt_of_nested_messages_and_maps():
    from unbusy.render.model_config import ProtoMap, Token

    text = to_pbtxt({"w": [{"name": "a", "inputs": ProtoMap({"x": {"data_type": Token("TYPE_FP32"), "dims": [3]}})}]})
    assert text == (
        'w {\n  name: "a"\n  inputs {\n    key: "x"\n    value {\n'
        "      data_type: TYPE_FP32\n      dims: [3]\n    }\n  }\n}\n"
    )


def test_canary_pins_its_model_version():
    manifests = render_all(load(dict(EXAMPLES)["canary-nginx.yaml"]))
    versions = {
        cm["metadata"]["labels"]["serving.unbusy.dev/variant"]: json.loads(cm["data"]["config.json"])["version_policy"]
        for cm in by_kind(manifests, "ConfigMap")
    }
    assert versions == {"stable": {"specific": {"versions": [3]}}, "canary": {"specific": {"versions": [4]}}}


def test_impossible_gpu_request_is_a_spec_error():
    with pytest.raises(SpecError, match="spec.gpu.migProfile: '5g.50gb' is not a MIG profile of A100-80GB"):
        render_all(isvc({"gpu": {"migProfile": "5g.50gb", "product": "A100-80GB"}}))


def test_every_example_names_its_own_inference_service():
    """`make demo` and the chart's RBAC test apply all examples in one namespace: a shared name
    would make one example an update of another."""
    names = [doc["metadata"]["name"] for _, doc in example_documents()]
    assert len(names) == len(set(names)), sorted(names)


LLM_EXAMPLES = ("llm-vllm.yaml", "llm-trtllm-mig.yaml", "llm-mig-auto.yaml")


@pytest.mark.parametrize("name", LLM_EXAMPLES)
def test_llm_examples_scale_on_the_llm_block_and_warn_of_nothing(name):
    service = load(dict(EXAMPLES)[name])
    assert service.spec.model.llm is not None and service.spec.ignored_fields() == []
    targets = service.spec.autoscaling.targets
    assert (targets.queue_depth_per_replica, targets.gpu_utilization_percent) == (0, 0)
    manifests = render_all(service)
    (deployment,) = by_kind(manifests, "Deployment")
    # Triton's time to first response: the TTFT of an engine that reports none.
    assert "--metrics-config=histogram_latencies=true" in triton(deployment)["args"]
    (rule,) = by_kind(manifests, "PrometheusRule")
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"LlmTtftP99High", "LlmTokenCapacityHigh"} <= names and "TritonQueueDepthHigh" not in names


def test_the_vllm_backend_is_configured_to_export_what_unbusy_reads():
    manifests = render_all(load(dict(EXAMPLES)["llm-vllm.yaml"]))
    (config_map,) = by_kind(manifests, "ConfigMap")[:1]
    config = json.loads(config_map["data"]["config.json"])
    assert config["parameters"] == {"REPORT_CUSTOM_METRICS": {"string_value": "true"}}
    # vLLM places its engine itself: one instance of the model, not one per GPU.
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_MODEL"}]
    assert 'key: "REPORT_CUSTOM_METRICS"' in config_map["data"]["config.pbtxt"]


def test_a_model_that_is_no_llm_keeps_its_config_and_args():
    manifests = render_all(load(dict(EXAMPLES)["queue-depth-operator.yaml"]))
    (deployment,) = by_kind(manifests, "Deployment")
    assert not any("histogram_latencies" in a for a in triton(deployment)["args"])
    assert "parameters" not in json.loads(by_kind(manifests, "ConfigMap")[0]["data"]["config.json"])


# --- Gateway API Inference Extension ---------------------------------------------------------

POOL_API = "inference.networking.k8s.io"


def pooled_llm(variants: list[dict] | None = None, pool: dict | None = None, demand: str = "triton", **routing) -> dict:
    """The vLLM example, its variants routed through InferencePools."""
    document = copy.deepcopy(dict(EXAMPLES)["llm-vllm.yaml"])
    document["spec"]["routing"] |= {"inferencePool": pool or {}} | routing
    document["spec"]["autoscaling"]["demand"] = {"source": demand}
    if variants:
        document["spec"]["variants"] = variants
    return document


def test_an_llms_variants_are_inference_pools_that_the_route_weighs():
    manifests = render_all(load(pooled_llm([{"name": "large", "weight": 80}, {"name": "small", "weight": 20}])))
    pools = by_kind(manifests, "InferencePool")
    for pool in pools:
        schemas.validate(pool)  # the released v1 CRD (tests/data/crds)
    assert [p["metadata"]["name"] for p in pools] == ["llama-8b-vllm-large", "llama-8b-vllm-small"]
    large = pools[0]["spec"]
    # The pool holds the pods the variant's Service selects, on the port Triton serves HTTP on.
    (service,) = (s for s in by_kind(manifests, "Service") if s["metadata"]["name"] == "llama-8b-vllm-large")
    assert large["selector"] == {"matchLabels": service["spec"]["selector"]}
    assert large["selector"]["matchLabels"]["serving.unbusy.dev/variant"] == "large"
    (deployment,) = (d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"] == "llama-8b-vllm-large")
    ports = {p["name"]: p["containerPort"] for p in triton(deployment)["ports"]}
    assert large["targetPorts"] == [{"number": ports["http"]}]
    assert large["endpointPickerRef"] == {
        "name": "llama-8b-vllm-large-epp",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }
    (route,) = by_kind(manifests, "HTTPRoute")
    schemas.validate(route)
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"group": POOL_API, "kind": "InferencePool", "name": "llama-8b-vllm-large", "weight": 80},
        {"group": POOL_API, "kind": "InferencePool", "name": "llama-8b-vllm-small", "weight": 20},
    ]


def test_the_endpoint_picker_is_the_specs():
    picker = {"endpointPicker": {"serviceSuffix": "-picker", "port": 9102, "failureMode": "FailOpen"}}
    (pool,) = by_kind(render_all(load(pooled_llm(pool=picker))), "InferencePool")
    schemas.validate(pool)
    assert pool["spec"]["endpointPickerRef"] == {
        "name": "llama-8b-vllm-main-picker",
        "port": {"number": 9102},
        "failureMode": "FailOpen",
    }


def test_the_released_crd_refuses_a_pool_without_its_required_fields():
    (pool,) = by_kind(render_all(load(pooled_llm())), "InferencePool")
    for field in ("selector", "targetPorts"):
        broken = copy.deepcopy(pool)
        del broken["spec"][field]
        with pytest.raises(jsonschema.ValidationError, match=f"'{field}' is a required property"):
            schemas.validate(broken)


def test_inference_pools_are_opt_in():
    manifests = render_all(load(dict(EXAMPLES)["llm-vllm.yaml"]))
    assert not by_kind(manifests, "InferencePool")
    (route,) = by_kind(manifests, "HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "llama-8b-vllm-main", "port": 8000, "weight": 100}]


@pytest.mark.parametrize(
    "document",
    [
        isvc_document({"routing": GATEWAY_ROUTING | {"inferencePool": {}}}),  # not an LLM
        pooled_llm(provider="nginx"),
    ],
    ids=["no-llm", "nginx"],
)
def test_an_inference_pool_needs_an_llm_behind_a_gateway(document):
    with pytest.raises(SpecError) as error:
        load(document)
    assert any(p.startswith("spec.routing.inferencePool: needs spec.model.llm") for p in error.value.problems)
