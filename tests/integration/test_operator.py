"""The operator against a real API server: CRD and CEL rules, reconcile, status, pruning,
garbage collection, idempotence, the scale subresource, MIG capacity, restarts and KEDA mode."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import kopf
import pytest

from polling import eventually
from unbusy.api import load
from unbusy.controller.handlers import KOPF_THREADS, RECONCILE_THREADS, REFRESH_THREADS, configure, stop_threads
from unbusy.controller.reconcile import reconcile
from unbusy.demo.processes import OperatorProcess
from unbusy.kube.children import contains
from unbusy.kube.client import connect
from unbusy.kube.status import get_inference_service
from unbusy.render import render_all

pytestmark = pytest.mark.integration

RESYNC_SECONDS = 5  # the module's operator recomputes every status this often (default 60)
CHILD_KINDS = "deployments,services,configmaps,poddisruptionbudgets,ingresses,servicemonitors,prometheusrules"


def manifest(name: str, **spec) -> dict:
    base = {
        "model": {"name": "resnet50", "repository": "s3://models/vision"},
        "gpu": {"count": 1, "product": "H100-80GB"},
        "autoscaling": {"mode": "none"},
        "scheduling": {"topologySpread": {"enabled": False}},
        "triton": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}},
    }
    return {
        "apiVersion": "serving.unbusy.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": base | spec,
    }


@pytest.fixture(scope="module")
def operator(testbed, crd, tmp_path_factory) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(testbed.kubeconfig, log, "--resync-seconds", str(RESYNC_SECONDS)).start()
    yield process
    process.stop()


def status_of(testbed, namespace: str, name: str) -> dict:
    return testbed.kubectl_json("get", "infsvc", name, "-n", namespace).get("status", {})


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def wait_ready(testbed, namespace: str, name: str, timeout: float = 90) -> dict:
    def ready():
        status = status_of(testbed, namespace, name)
        return status if condition(status, "Ready").get("status") == "True" else None

    return eventually(ready, timeout)


def children(testbed, namespace: str) -> dict[str, dict]:
    items = testbed.kubectl_json("get", CHILD_KINDS, "-n", namespace, "-l", "app.kubernetes.io/managed-by=unbusy")
    return {f"{i['kind']}/{i['metadata']['name']}": i for i in items["items"]}


# --- the API client ------------------------------------------------------------------------


def test_every_worker_keeps_its_api_connection(testbed, caplog):
    """kopf's threads, both work queues' and the scaling loop's all in an API call at once: urllib3
    keeps every connection in its pool (with the kubernetes client's default of 5 per CPU it
    discarded the surplus on 2 CPUs)."""
    settings, memo = kopf.OperatorSettings(), kopf.Memo(kubeconfig=str(testbed.kubeconfig), resync_seconds=60)
    configure(settings=settings, memo=memo)
    stop_threads(memo=memo)  # their threads: the calls below take their connections
    workers = KOPF_THREADS + RECONCILE_THREADS + REFRESH_THREADS + 1
    together = threading.Barrier(workers)

    def call() -> None:
        together.wait()
        memo.api.request("GET", "/api/v1/namespaces", watch=True, timeout_seconds=1)  # holds it ~1 s

    threads = [threading.Thread(target=call) for _ in range(workers)]
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not [r.getMessage() for r in caplog.records if "Connection pool is full" in r.getMessage()]


# --- the CRD and its CEL rules ------------------------------------------------------------


def test_crd_is_accepted_with_printer_columns_and_scale(testbed, crd):
    definition = testbed.kubectl_json("get", "crd", "inferenceservices.serving.unbusy.dev")
    version = definition["spec"]["versions"][0]
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    assert definition["spec"]["names"]["shortNames"] == ["infsvc"]


CEL_CASES = {
    "weights": (
        {"variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 60}]},
        "spec.variants: Invalid value",
        "the weights must add up to 100",
    ),
    "unique-names": (
        {"variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]},
        "spec.variants: Invalid value",
        "variant names must be unique",
    ),
    "nginx-two-weighted": (
        {
            "routing": {"host": "a.example.com", "provider": "nginx"},
            "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20}],
        },
        "spec.variants: Invalid value",
        "at most two variants may carry weight",
    ),
    "nginx-by-default-two-weighted": (  # no routing.gateway: ingress-nginx, as before the Gateway API came first
        {
            "routing": {"host": "a.example.com"},
            "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20}],
        },
        "spec.variants: Invalid value",
        "at most two variants may carry weight",
    ),
    "inference-pool-needs-llm": (
        {"routing": {"host": "a.example.com", "gateway": {"name": "edge"}, "inferencePool": {}}},
        "spec.routing.inferencePool: Invalid value",
        "needs spec.model.llm",
    ),
    "gateway-ref": (
        {"routing": {"host": "a.example.com", "provider": "gateway"}},
        "spec.routing.gateway: Invalid value",
        "gateway is required with provider gateway",
    ),
    "min-max": (
        {"autoscaling": {"mode": "none", "minReplicas": 5, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas: Invalid value",
        "must be <= maxReplicas",
    ),
    "variant-min-max": (
        {"variants": [{"name": "a", "weight": 100, "minReplicas": 3, "maxReplicas": 1}]},
        "spec.variants[0].minReplicas: Invalid value",
        "must be <= maxReplicas",
    ),
    "gpu-xor": (
        {"gpu": {"count": 1, "migProfile": "1g.10gb", "product": "A100-80GB"}},
        "spec.gpu: Invalid value",
        "set exactly one of count (whole GPUs) or migProfile (a MIG slice)",
    ),
    "mig-product": (
        {"gpu": {"migProfile": "1g.10gb"}},
        "spec.gpu.product: Invalid value",
        "required with migProfile",
    ),
    "demand-edge-not-rendered": (
        {"routing": {"host": "a.example.com"}, "autoscaling": {"mode": "none", "demand": {"source": "istio"}}},
        "spec.autoscaling.demand.source: Invalid value",
        "nginx reads the Ingresses of routing.provider nginx, envoy-gateway, istio and traefik the HTTPRoute",
    ),
    "demand-promql-query": (
        {"autoscaling": {"mode": "none", "demand": {"source": "promql"}}},
        "spec.autoscaling.demand.query: Invalid value",
        "required with source promql",
    ),
    "rollout-steps-rise": (
        {"rollout": {"canary": {"steps": [{"weight": 50}, {"weight": 10}]}}},
        "spec.rollout.canary.steps: Invalid value",
        "the steps' weights must rise",
    ),
    "rollout-check-one-limit": (
        {"rollout": {"canary": {"checks": [{"metric": "p99LatencyMs", "max": 200, "maxRatioToStable": 2}]}}},
        "spec.rollout.canary.checks[0].max: Invalid value",
        "set exactly one of max (an absolute limit) or maxRatioToStable",
    ),
    "rollout-nginx-one-weighted": (
        {
            "rollout": {"canary": {}},
            "routing": {"host": "a.example.com", "provider": "nginx"},
            "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
        },
        "spec.variants: Invalid value",
        "with rollout.canary and ingress-nginx (routing.provider nginx, or no routing.gateway) only one variant",
    ),
    "rollout-canary-name": (
        {"rollout": {"canary": {}}, "variants": [{"name": "a-canary", "weight": 100}]},
        "spec.variants: Invalid value",
        "no variant name may end in -canary",
    ),
    "keda-without-prometheus": (
        {"autoscaling": {"mode": "keda", "targets": {"capacityUtilizationPercent": 0}}},
        "spec.autoscaling.keda: Invalid value",
        "required with mode keda: the Prometheus address KEDA reads",
    ),
    "llm-engine-backend": (
        {
            "model": {
                "name": "llama",
                "repository": "pvc://models/llm",
                "config": {"backend": "tensorrtllm"},
                "llm": {
                    "engine": "vllm",
                    "slo": {"ttftP99Ms": 2000},
                    "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000},
                },
            }
        },
        "spec.model.llm.engine: Invalid value",
        "must match config.backend where that is vllm or tensorrtllm",
    ),
    "keda-without-capacity": (
        {"autoscaling": {"mode": "keda", "keda": {"serverAddress": "http://prometheus:9090"}}},
        "spec.autoscaling.capacity.rpsPerReplica: Invalid value",
        "required with mode keda and targets.capacityUtilizationPercent above 0",
    ),
}


@pytest.mark.parametrize("case", CEL_CASES, ids=list(CEL_CASES))
def test_cel_rule_rejects_bad_spec_naming_the_field(testbed, crd, case):
    spec, field, message = CEL_CASES[case]
    result = testbed.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest("bad", **spec)), check=False
    )
    assert result.returncode != 0
    assert field in result.stderr and message in result.stderr, result.stderr


# --- reconcile ----------------------------------------------------------------------------


def test_create_update_prune_and_delete(testbed, operator, namespace):
    two = [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]
    testbed.apply(manifest("svc", variants=two, routing={"host": "svc.example.com"}), namespace)
    status = wait_ready(testbed, namespace, "svc")
    assert (status["readyReplicas"], status["replicaSummary"], status["weights"]) == (2, "2/2", "stable=90,canary=10")
    assert status["selector"] == "serving.unbusy.dev/inferenceservice=svc"
    assert condition(status, "Ready")["observedGeneration"] == 1

    owner_uid = testbed.kubectl_json("get", "infsvc", "svc", "-n", namespace)["metadata"]["uid"]
    found = children(testbed, namespace)
    assert {"Deployment/svc-stable", "Deployment/svc-canary", "Service/svc", "Ingress/svc-canary"} <= found.keys()
    for child in found.values():
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["uid"], ref["controller"]) == (owner_uid, True)

    table = testbed.kubectl("get", "infsvc", "-n", namespace).stdout
    assert "True" in table and "2/2" in table and "stable=90,canary=10" in table

    # Update: a new image, the canary promoted to all the traffic, then removed.
    update = manifest("svc", variants=[{"name": "stable", "weight": 100}], routing={"host": "svc.example.com"})
    update["spec"]["triton"]["image"] = "nvcr.io/nvidia/tritonserver:25.02-py3"
    testbed.apply(update, namespace)

    def updated():
        found = children(testbed, namespace)
        deployment = found.get("Deployment/svc-stable")
        image = deployment and deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        canary = {k for k in found if k.endswith(("/svc-canary", "/svc-canary-model"))}
        return image == "nvcr.io/nvidia/tritonserver:25.02-py3" and not canary

    eventually(updated)  # the canary's Deployment, Service, Ingress and PDB are all pruned
    status = wait_ready(testbed, namespace, "svc")
    assert status["weights"] == "stable=100" and condition(status, "Ready")["observedGeneration"] == 2

    # Something the operator did not create is never touched, even with our labels on it.
    stranger = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "svc-stranger",
            "labels": {"app.kubernetes.io/managed-by": "unbusy", "serving.unbusy.dev/inferenceservice": "svc"},
        },
    }
    testbed.apply(stranger, namespace)
    testbed.kubectl("annotate", "infsvc", "svc", "-n", namespace, "touch=1")
    testbed.apply(manifest("svc"), namespace)  # routing off: the Ingress goes
    eventually(lambda: "Ingress/svc" not in children(testbed, namespace))
    testbed.kubectl("get", "configmap", "svc-stranger", "-n", namespace)

    # Delete: the garbage collector removes every child through the owner references.
    testbed.kubectl("delete", "infsvc", "svc", "-n", namespace)
    eventually(lambda: set(children(testbed, namespace)) == {"ConfigMap/svc-stranger"}, timeout=90)


def test_second_reconcile_of_an_unchanged_spec_writes_nothing(testbed, operator, namespace):
    testbed.apply(manifest("idem", routing={"host": "idem.example.com"}), namespace)
    wait_ready(testbed, namespace, "idem")
    api = connect(str(testbed.kubeconfig))
    body = get_inference_service(api, namespace, "idem")
    reconcile(api, body)  # converge anything the operator had not yet written
    body = get_inference_service(api, namespace, "idem")
    before = api.write_count
    outcome = reconcile(api, body)
    assert api.write_count - before == 0, api.writes
    assert outcome.applied == [] and outcome.pruned == [] and len(outcome.unchanged) >= 6

    # The operator agrees: restarted, it resumes (reconciles) every InferenceService and,
    # with nothing changed, its write counter stays at zero.
    operator.stop()
    operator.start()
    eventually(lambda: operator.metric("unbusy_reconcile_duration_seconds_count") >= 1)
    assert operator.metric('unbusy_reconcile_duration_seconds_count{result="unchanged"}') >= 1
    assert operator.metric("unbusy_api_writes_total") == 0


def test_kubectl_scale_uses_the_scale_subresource(testbed, operator, namespace):
    two = [{"name": "stable", "weight": 75}, {"name": "canary", "weight": 25}]
    testbed.apply(manifest("scaled", variants=two), namespace)
    wait_ready(testbed, namespace, "scaled")
    testbed.kubectl("scale", "infsvc/scaled", "-n", namespace, "--replicas=4")

    def split():
        deployments = testbed.kubectl_json("get", "deployments", "-n", namespace)["items"]
        return {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments}

    eventually(lambda: split() == {"scaled-stable": 3, "scaled-canary": 1})
    status = eventually(lambda: (s := wait_ready(testbed, namespace, "scaled"))["readyReplicas"] == 4 and s)
    assert status["replicas"] == 4
    path = f"/apis/serving.unbusy.dev/v1alpha1/namespaces/{namespace}/inferenceservices/scaled/scale"
    scale = json.loads(testbed.kubectl("get", "--raw", path).stdout)
    assert scale["status"] == {"replicas": 4, "selector": "serving.unbusy.dev/inferenceservice=scaled"}


def test_scaled_to_zero_on_purpose_reads_as_settled(testbed, operator, namespace):
    two = [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]
    testbed.apply(manifest("idle", variants=two, replicas=2, autoscaling={"mode": "none", "minReplicas": 0}), namespace)
    assert wait_ready(testbed, namespace, "idle")["replicaSummary"] == "2/2"
    testbed.kubectl("scale", "infsvc/idle", "-n", namespace, "--replicas=0")

    def settled():
        status = status_of(testbed, namespace, "idle")
        return condition(status, "Ready").get("reason") == "ScaledToZero" and status

    status = eventually(settled, timeout=60)
    assert condition(status, "Ready")["status"] == "True" and condition(status, "Progressing")["status"] == "False"
    assert (status["replicaSummary"], status["replicas"]) == ("0/0", 0)
    deployments = testbed.kubectl_json("get", "deployments", "-n", namespace)["items"]
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments} == {"idle-a": 0, "idle-b": 0}


def test_mig_slices_run_out_and_the_status_says_why(testbed, operator, namespace):
    mig = {"migProfile": "1g.10gb", "product": "A100-80GB"}
    testbed.apply(manifest("mig", gpu=mig, replicas=8), namespace)

    def degraded():
        status = status_of(testbed, namespace, "mig")
        return (
            status
            if condition(status, "Degraded").get("reason") == "Unschedulable" and status.get("readyReplicas") == 7
            else None
        )

    status = eventually(degraded, timeout=120)
    message = condition(status, "Degraded")["message"]
    assert "1 of 8 replicas cannot be scheduled" in message
    assert "no node has a free MIG slice 1g.10gb (nvidia.com/mig-1g.10gb)" in message
    assert condition(status, "Ready")["status"] == "False"
    assert status["gpu"]["resourceName"] == "nvidia.com/mig-1g.10gb"
    described = testbed.kubectl("describe", "infsvc", "mig", "-n", namespace).stdout
    assert "Unschedulable" in described


def test_invalid_spec_past_the_schema_is_a_condition_not_a_crash(testbed, operator, namespace):
    # A profile the CRD pattern allows but the A100-80GB does not have.
    testbed.apply(manifest("nomig", gpu={"migProfile": "1g.5gb", "product": "A100-80GB"}), namespace)

    def invalid():
        status = status_of(testbed, namespace, "nomig")
        return condition(status, "Ready").get("reason") == "InvalidSpec" and status

    status = eventually(invalid)
    assert "spec.gpu.migProfile: '1g.5gb' is not a MIG profile of A100-80GB" in condition(status, "Ready")["message"]
    events = testbed.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=InvalidSpec").stdout
    assert "nomig" in events
    assert operator.process.poll() is None  # still running


def test_an_llm_on_triton_queue_target_is_reconciled_with_a_warning_naming_the_field(testbed, operator, namespace):
    llm = {"slo": {"ttftP99Ms": 2000}, "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000}}
    model = {"name": "llama", "repository": "pvc://models/llm", "config": {"backend": "vllm", "maxBatchSize": 0}}
    testbed.apply(manifest("llm", model=model | {"llm": llm}, autoscaling={"mode": "none"}), namespace)

    def warned():
        return testbed.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=IgnoredField").stdout

    assert "spec.autoscaling.targets.queueDepthPerReplica" in eventually(
        lambda: "queueDepthPerReplica" in warned() and warned()
    )
    assert condition(status_of(testbed, namespace, "llm"), "Ready").get("reason") != "InvalidSpec"


def test_operator_killed_midway_converges_after_restart(testbed, operator, namespace):
    operator.kill()
    testbed.apply(manifest("restart", replicas=2, routing={"host": "restart.example.com"}), namespace)
    operator.start()
    status = wait_ready(testbed, namespace, "restart")
    assert status["readyReplicas"] == 2
    first = {k: v["metadata"]["resourceVersion"] for k, v in children(testbed, namespace).items()}

    # Killed again right after a spec change: the restarted operator finishes the job.
    testbed.kubectl("scale", "infsvc/restart", "-n", namespace, "--replicas=3")
    operator.kill()
    operator.start()
    status = eventually(lambda: (s := wait_ready(testbed, namespace, "restart"))["readyReplicas"] == 3 and s)
    assert set(children(testbed, namespace)) == set(first)


def ready_matches_deployments(testbed, namespace: str, names: list[str]) -> bool:
    """Every one Ready, its per-variant counts those its Deployments show."""
    live = {
        d["metadata"]["name"]: d.get("status", {}).get("readyReplicas", 0)
        for d in testbed.kubectl_json("get", "deployments", "-n", namespace)["items"]
    }
    services = {
        i["metadata"]["name"]: i.get("status", {})
        for i in testbed.kubectl_json("get", "infsvc", "-n", namespace)["items"]
    }
    return all(
        condition(services.get(name, {}), "Ready").get("status") == "True"
        and all(v["readyReplicas"] == live.get(f"{name}-{v['name']}") for v in services[name]["variants"])
        for name in names
    )


def test_operator_killed_mid_reconcile_every_status_converges(testbed, operator, namespace):
    """Issue 11: after SIGKILLs during a reconcile of many services, statuses stayed at
    `a 0/4` while their Deployments showed 4/4. Two kills, then each service Ready with its
    Deployments' real counts within 60 s of the restart."""
    two = [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]
    names = [f"k{i}" for i in range(6)]
    manifests = [
        manifest(name, variants=two, replicas=2) | {"metadata": {"name": name, "namespace": namespace}}
        for name in names
    ]
    testbed.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))
    eventually(lambda: testbed.kubectl_json("get", "deployments", "-n", namespace)["items"], timeout=30, every=0.1)
    operator.kill()  # some children written, most not
    operator.start()
    operator.kill()  # while it resumes every one of them
    operator.start()
    started = time.monotonic()
    eventually(lambda: ready_matches_deployments(testbed, namespace, names), timeout=60)
    print(f"converged {time.monotonic() - started:.1f} s after the restart")
    deployments = {d["metadata"]["name"] for d in testbed.kubectl_json("get", "deployments", "-n", namespace)["items"]}
    assert deployments == {f"{name}-{v}" for name in names for v in "ab"}


def test_a_status_left_behind_converges_with_no_further_event(testbed, operator, namespace):
    """What a lost write leaves: a status older than the Deployments it describes, and no
    Deployment event to come. The resync corrects it within one interval, then writes nothing."""
    two = [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]
    testbed.apply(manifest("behind", variants=two, replicas=4), namespace)
    status = eventually(lambda: (s := wait_ready(testbed, namespace, "behind"))["readyReplicas"] == 4 and s)

    def versions() -> dict[str, str]:
        deployments = testbed.kubectl_json("get", "deployments", "-n", namespace)["items"]
        return {d["metadata"]["name"]: d["metadata"]["resourceVersion"] for d in deployments}

    before = versions()

    stale = {
        "readyReplicas": 2,
        "replicaSummary": "2/4",
        "variants": [v | {"readyReplicas": 0, "ready": False} if v["name"] == "b" else v for v in status["variants"]],
        "conditions": [
            c | {"status": "False", "reason": "ReplicasNotReady", "message": "waiting for ready replicas: b 0/2"}
            if c["type"] == "Ready"
            else c
            for c in status["conditions"]
        ],
    }
    patch = json.dumps({"status": stale})
    # The patch's own answer: a resync may already have set it right by the time of a second read.
    patched = testbed.kubectl_json(
        "patch", "infsvc", "behind", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )
    assert condition(patched["status"], "Ready")["status"] == "False"

    status = wait_ready(testbed, namespace, "behind", timeout=RESYNC_SECONDS + 5)
    assert (status["readyReplicas"], status["replicaSummary"]) == (4, "4/4")
    assert [v["readyReplicas"] for v in status["variants"]] == [2, 2]
    assert versions() == before  # no Deployment changed: nothing but the resync set it right

    # Resyncs with nothing new write nothing: the object stays at its version.
    version = testbed.kubectl_json("get", "infsvc", "behind", "-n", namespace)["metadata"]["resourceVersion"]
    time.sleep(2 * RESYNC_SECONDS)
    assert testbed.kubectl_json("get", "infsvc", "behind", "-n", namespace)["metadata"]["resourceVersion"] == version


def test_operator_mode_without_prometheus_holds_replicas_and_says_why(testbed, operator, namespace):
    testbed.apply(manifest("held", autoscaling={"mode": "operator", "minReplicas": 2, "maxReplicas": 5}), namespace)
    status = wait_ready(testbed, namespace, "held")
    assert status["readyReplicas"] == 2

    def inactive():
        scaling = condition(status_of(testbed, namespace, "held"), "ScalingActive")
        return scaling.get("status") == "False" and scaling

    scaling = eventually(inactive)
    assert scaling["reason"] == "MetricsUnavailable" and "--prometheus-url" in scaling["message"]
    deployment = testbed.kubectl_json("get", "deployment", "held-main", "-n", namespace)
    assert deployment["spec"]["replicas"] == 2


# --- autoscaling mode keda ----------------------------------------------------------------


def test_keda_mode_creates_a_scaled_object_keda_accepts(testbed, operator, namespace):
    """The ScaledObject the operator applies is kept whole by KEDA's own CRD (which the testbed
    installs from KEDA's Go module): nothing pruned, the Deployment's replicas left to KEDA."""
    autoscaling = {
        "mode": "keda",
        "minReplicas": 1,
        "maxReplicas": 4,
        "targets": {"queueDepthPerReplica": 16, "capacityUtilizationPercent": 80},
        "capacity": {"rpsPerReplica": 500},
        "onMetricsMissing": "minReplicas",
        "keda": {"serverAddress": "http://prometheus-operated.monitoring.svc:9090"},
    }
    isvc = manifest("scaled", autoscaling=autoscaling, routing={"host": "scaled.example.com"})
    testbed.apply(isvc, namespace)
    [scaled] = eventually(lambda: testbed.kubectl_json("get", "scaledobjects.keda.sh", "-n", namespace)["items"])

    isvc["metadata"]["namespace"] = namespace
    [rendered] = [m for m in render_all(load(isvc)) if m["kind"] == "ScaledObject"]
    assert scaled["metadata"]["name"] == rendered["metadata"]["name"] == "scaled-main"
    assert scaled["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    assert contains(scaled["spec"], rendered["spec"]), (scaled["spec"], rendered["spec"])
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 1, "behavior": "static"}
    assert [(t["name"], t["metadata"]["threshold"]) for t in spec["triggers"]] == [("queue", "16"), ("demand", "400")]
    deployment = testbed.kubectl_json("get", "deployment", "scaled-main", "-n", namespace, "--show-managed-fields")
    [applied] = [f for f in deployment["metadata"]["managedFields"] if f["manager"] == "unbusy"]
    assert "f:replicas" not in applied["fieldsV1"]["f:spec"]  # KEDA's HPA owns them


# --- isolation ----------------------------------------------------------------------------


def test_triton_pods_are_admitted_under_the_restricted_pod_security_level(testbed, operator, namespace):
    """PodSecurity admission (on by default in the API server) enforces `restricted`: the pods of both
    kinds of Deployment (repository config, and the operator's config loaded by a postStart hook) are
    created, and the NetworkPolicy that fences Triton's ports is there."""
    testbed.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    managed = {"name": "resnet50", "repository": "s3://models/vision", "config": {"backend": "onnxruntime"}}
    testbed.apply(manifest("plain"), namespace)
    testbed.apply(manifest("managed", model=managed), namespace)
    for name in ("plain", "managed"):
        assert wait_ready(testbed, namespace, name)["readyReplicas"] == 1
    refused = testbed.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=FailedCreate").stdout
    assert "violates PodSecurity" not in refused, refused
    policy = testbed.kubectl_json("get", "networkpolicy", "managed", "-n", namespace)
    assert policy["spec"]["podSelector"]["matchLabels"] == {"serving.unbusy.dev/inferenceservice": "managed"}

    # The same pod with what `restricted` forbids is refused: the level is really enforced here.
    pod = testbed.kubectl_json("get", "pods", "-n", namespace, "-l", "serving.unbusy.dev/inferenceservice=plain")
    spec = pod["items"][0]["spec"]
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escalates"}, "spec": spec}
    result = testbed.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", "-", input=json.dumps(privileged), check=False
    )
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr, result.stderr
