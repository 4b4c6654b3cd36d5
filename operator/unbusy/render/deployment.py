"""One Triton Deployment per variant."""

from __future__ import annotations

import json
from typing import Any

from unbusy.api import InferenceService, Variant
from unbusy.gpu.request import GPU_RESOURCE, GpuRequest
from unbusy.render import meta
from unbusy.render.context import RenderContext, desired_replicas
from unbusy.render.model_config import CONFIG_JSON, config_map_name, config_of, manages_config

MODEL_MOUNT = "/models"
CONFIG_MOUNT = "/etc/unbusy/model"

# Well-known taints of spot / preemptible node pools (GKE, EKS via Karpenter, AKS).
SPOT_TOLERATIONS = [
    {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
    {"key": "karpenter.sh/capacity-type", "operator": "Equal", "value": "spot", "effect": "NoSchedule"},
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"},
]

# Triton's APIs that change or reveal what it serves: loading and unloading models (arbitrary code
# in a model repository), their configuration, shared-memory regions, trace and log settings.
# Closed to the network: a request needs the header below with a key that never leaves the pod.
RESTRICTED_APIS = ("model-repository", "model-config", "shared-memory", "trace", "logging")
ADMIN_HEADER = "unbusy-admin-key"
ADMIN_KEY_DIR = "/run/unbusy"
ADMIN_KEY_FILE = f"{ADMIN_KEY_DIR}/admin-key"
_RESTRICTION = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$key"
# The container's entry point: draws a random key, leaves it where the postStart hook (in the same
# container) reads it, and execs tritonserver with its admin APIs restricted to that key. A constant:
# the rendered arguments follow as "$@", so no value from a spec is ever part of a shell script.
START_TRITON = f"""set -eu
key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \\n')
umask 077
printf %s "$key" > {ADMIN_KEY_FILE}
exec tritonserver --http-restricted-api={_RESTRICTION} --grpc-restricted-protocol={_RESTRICTION} "$@"
"""

# Loads the model with the operator-managed config through Triton's repository API, once the
# server is live. A postStart hook holds the container out of Running (and so out of
# readiness) until it returns; a failure restarts the container. Its values arrive as JSON
# literals, so none can end a string early.
LOAD_MODEL = """import json, time, urllib.parse, urllib.request
port, key_file, config_file, model, timeout, header = json.loads(%s)
base = f"http://127.0.0.1:{port}/v2"
for _ in range(600):
    try:
        urllib.request.urlopen(base + "/health/live", timeout=2)
        break
    except Exception:
        time.sleep(1)
config = open(config_file).read()
body = json.dumps({"parameters": {"config": config}}).encode()
headers = {"Content-Type": "application/json", header: open(key_file).read()}
url = base + "/repository/models/" + urllib.parse.quote(model, safe="") + "/load"
urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=timeout)
"""


def load_model_script(isvc: InferenceService) -> str:
    values = [
        meta.HTTP_PORT,
        ADMIN_KEY_FILE,
        f"{CONFIG_MOUNT}/{CONFIG_JSON}",
        isvc.spec.model.name,
        isvc.spec.triton.startup_timeout_seconds,
        ADMIN_HEADER,
    ]
    return LOAD_MODEL % repr(json.dumps(values))


def _repository(isvc: InferenceService, variant: Variant) -> tuple[str, list[dict], list[dict]]:
    """Triton's --model-repository value, plus the volumes and mounts it needs."""
    uri = variant.model_repository or isvc.spec.model.repository
    if not uri.startswith("pvc://"):
        return uri, [], []  # Triton reads s3:// and gs:// itself
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    volume = {"name": "model-repository", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    mount = {"name": "model-repository", "mountPath": MODEL_MOUNT, "readOnly": True}
    return f"{MODEL_MOUNT}/{path}".rstrip("/"), [volume], [mount]


def _args(isvc: InferenceService, variant: Variant, repository: str) -> list[str]:
    model = isvc.spec.model
    args = [
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        f"--http-port={meta.HTTP_PORT}",
        f"--grpc-port={meta.GRPC_PORT}",
        f"--metrics-port={meta.METRICS_PORT}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=true",
        # P99 latency alerts read Triton's summary quantiles, off by default.
        "--metrics-config=summary_latencies=true",
        "--strict-readiness=true",
        f"--exit-timeout-secs={isvc.spec.triton.termination_grace_period_seconds}",
    ]
    if model.llm is not None:
        # Time to first response per model: an LLM engine that reports no TTFT (TensorRT-LLM) has Triton's.
        args.append("--metrics-config=histogram_latencies=true")
    if not manages_config(isvc, variant):
        args.append(f"--load-model={model.name}")
    config = config_of(isvc, variant)
    if config and config.response_cache:
        args.append("--cache-config=local,size=1073741824")
    return args + list(isvc.spec.triton.args)


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _container(isvc: InferenceService, variant: Variant, gpu: GpuRequest, repository: str, mounts: list) -> dict:
    triton = isvc.spec.triton
    resources = {
        "requests": {**triton.resources.requests, gpu.resource_name: str(gpu.count)},
        "limits": {**triton.resources.limits, gpu.resource_name: str(gpu.count)},
    }
    container: dict[str, Any] = {
        "name": "triton",
        "image": variant.image or triton.image,
        # $0 of the script names the process; the arguments are tritonserver's.
        "command": ["/bin/sh", "-c", START_TRITON, "tritonserver"],
        "args": _args(isvc, variant, repository),
        "ports": [
            {"name": "http", "containerPort": meta.HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": meta.GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": meta.METRICS_PORT, "protocol": "TCP"},
        ],
        "env": list(triton.env),
        "resources": resources,
        # Startup covers pulling weights and loading the model; liveness only starts after it.
        "startupProbe": _probe("/v2/health/live", 10, max(1, triton.startup_timeout_seconds // 10)),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "readinessProbe": _probe("/v2/health/ready", 5, 2),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            *mounts,
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "admin-key", "mountPath": ADMIN_KEY_DIR},
        ],
    }
    if manages_config(isvc, variant):
        container["volumeMounts"].append({"name": "model-config", "mountPath": CONFIG_MOUNT, "readOnly": True})
        container["lifecycle"] = {"postStart": {"exec": {"command": ["python3", "-c", load_model_script(isvc)]}}}
    return container


def _tolerations(isvc: InferenceService) -> list[dict]:
    scheduling = isvc.spec.scheduling
    gpu = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return gpu + (SPOT_TOLERATIONS if scheduling.spot else []) + list(scheduling.tolerations)


def _pod_spec(isvc: InferenceService, variant: Variant, gpu: GpuRequest) -> dict[str, Any]:
    scheduling = isvc.spec.scheduling
    repository, volumes, mounts = _repository(isvc, variant)
    volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
    volumes.append({"name": "admin-key", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    if manages_config(isvc, variant):
        volumes.append({"name": "model-config", "configMap": {"name": config_map_name(isvc, variant.name)}})
    pod: dict[str, Any] = {
        "containers": [_container(isvc, variant, gpu, repository, mounts)],
        "volumes": volumes,
        "nodeSelector": gpu.node_selector | scheduling.node_selector,
        "tolerations": _tolerations(isvc),
        "terminationGracePeriodSeconds": isvc.spec.triton.termination_grace_period_seconds,
        "securityContext": {"runAsNonRoot": True, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "enableServiceLinks": False,
    }
    spread = scheduling.topology_spread
    if spread.enabled:
        pod["topologySpreadConstraints"] = [
            {
                "maxSkew": spread.max_skew,
                "topologyKey": spread.topology_key,
                "whenUnsatisfiable": spread.when_unsatisfiable,
                "labelSelector": {"matchLabels": meta.selector(isvc, variant.name)},
                "matchLabelKeys": ["pod-template-hash"],
            }
        ]
    optional = {
        "affinity": scheduling.affinity,
        "priorityClassName": scheduling.priority_class_name,
        "serviceAccountName": isvc.spec.triton.service_account_name,
    }
    return pod | {k: v for k, v in optional.items() if v}


def render(isvc: InferenceService, ctx: RenderContext, gpu: GpuRequest) -> list[dict[str, Any]]:
    rollout = isvc.spec.rollout
    replicas = desired_replicas(isvc, ctx)
    manifests = []
    for variant in isvc.spec.effective_variants():
        name = meta.variant_name(isvc, variant.name)
        spec: dict[str, Any] = {
            "selector": {"matchLabels": meta.selector(isvc, variant.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": meta.int_or_percent(rollout.max_surge),
                    "maxUnavailable": meta.int_or_percent(rollout.max_unavailable),
                },
            },
            "revisionHistoryLimit": rollout.revision_history_limit,
            "progressDeadlineSeconds": rollout.progress_deadline_seconds,
            "template": {
                "metadata": {"labels": meta.labels(isvc, variant.name)},
                "spec": _pod_spec(isvc, variant, gpu),
            },
        }
        if replicas[variant.name] is not None:
            spec["replicas"] = replicas[variant.name]
        manifests.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta.metadata(isvc, name, variant.name),
                "spec": spec,
            }
        )
    return manifests
