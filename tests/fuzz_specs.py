"""Hypothesis strategies of InferenceService manifests, valid and invalid, for the fuzz tests.

A case is a manifest plus what must become of it. Valid manifests vary the sections a user
writes most (GPU, variants and weights, routing, autoscaling, alerts, peers, Triton's args with
shell, YAML and template metacharacters). Invalid ones are a valid manifest with one value
broken, and `field` is the path every refusal must name:

- schema breakers, derived from the CRD's own schema (the single source of truth, so every
  constraint there is tried): a value past a minimum or maximum or maxLength, outside an enum,
  against a pattern, of the wrong type, or an unknown field. The API server refuses these at
  admission; `unbusy render` and the operator refuse them too;
- cross-field and operator-only rules: weights, unique names, bounds, MIG profiles a product
  lacks, alert label names, label keys, PromQL placeholders. Some only the operator can check
  (InvalidSpec condition).

How many cases run: UNBUSY_FUZZ=bench (bench/fuzz.py) asks for the benchmark's numbers.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from unbusy.api.crd import openapi_schema
from unbusy.api.spec import InferenceServiceSpec

BENCH = os.environ.get("UNBUSY_FUZZ") == "bench"
RENDER_CASES = 2000 if BENCH else 300  # through `unbusy render`: cheap
API_CASES = 1000 if BENCH else 60  # through the API server and the operator, in one batch

# Text a user can put where the spec takes free text, chosen to break out of PromQL strings,
# YAML scalars, Go templates (Prometheus annotations) and shell commands if anything pasted it raw.
HOSTILE_TEXT = [
    'x"} or up{a="',
    "{{ end }}",
    "{{ $labels.pod }}",
    "$(touch /tmp/pwned)",
    "`id`; rm -rf /",
    "a: b\n- c",
    "&anchor *alias !!python/object",
    "'\"\\",
    "#comment",
    "--model-control-mode=poll",
    "模型 😀 \x01\x7f\x85\x9f",  # beyond the BMP, and control characters
]
NAME = st.from_regex(r"\A[a-z]([a-z0-9]{0,6}[a-z0-9])?\Z")


@dataclass(frozen=True)
class Case:
    manifest: dict[str, Any]
    field: str | None  # the field every refusal must name; None for a valid manifest
    why: str  # what was broken, for a failure message

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]


# --- valid manifests --------------------------------------------------------------------


@st.composite
def variants(draw: st.DrawFn, provider: str | None) -> list[dict[str, Any]]:
    """Zero to three uniquely named variants whose weights add up to 100; with nginx at most two weighted."""
    names = draw(st.lists(st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z"), min_size=0, max_size=3, unique=True))
    if not names:
        return []
    weighted = len(names) if provider != "nginx" else min(2, len(names))
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=weighted - 1, max_size=weighted - 1)))
    weights = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)] + [0] * (len(names) - weighted)
    out = []
    for name, weight in zip(names, weights, strict=True):
        variant: dict[str, Any] = {"name": name, "weight": weight}
        if draw(st.booleans()):
            variant["modelVersion"] = str(draw(st.integers(1, 99)))
        out.append(variant)
    return out


@st.composite
def valid_manifests(draw: st.DrawFn, idle: bool = False) -> dict[str, Any]:
    """A manifest both the API server and the operator accept. `idle`: no replicas, so that a
    batch of them creates no pods (autoscaling none, minReplicas 0)."""
    gpu = draw(
        st.sampled_from(
            [
                {"count": 1, "product": "H100-80GB"},
                {"count": 2},
                {"migProfile": "1g.10gb", "product": "A100-80GB"},
                {"migProfile": "3g.40gb", "product": "H100-80GB", "migStrategy": "single"},
                {"migProfile": "auto", "product": "A100-40GB"},
            ]
        )
    )
    model = {"name": draw(st.from_regex(r"\A[A-Za-z0-9_.-]{1,20}\Z")), "repository": "s3://models/vision"}
    if gpu.get("migProfile") == "auto":
        model["gpuMemory"] = draw(st.sampled_from(["4Gi", "9Gi", "14Gi"]))
    provider = draw(st.sampled_from([None, "nginx", "gateway"]))
    spec: dict[str, Any] = {
        "model": model,
        "gpu": gpu,
        "variants": draw(variants(provider)),
        "triton": {"args": draw(st.lists(st.sampled_from(HOSTILE_TEXT) | st.text(max_size=20), max_size=3))},
        "alerts": {
            "runbookBaseUrl": "https://runbooks.example.com/" + draw(st.sampled_from(HOSTILE_TEXT)),
            "labels": {"team": draw(st.sampled_from(HOSTILE_TEXT))},
            "queueDepth": {"threshold": draw(st.integers(0, 1000)), "for": draw(st.sampled_from(["30s", "2m", "1h"]))},
        },
        "monitoring": {"kind": draw(st.sampled_from(["ServiceMonitor", "PodMonitor", "none"]))},
        "networkPolicy": {
            "serving": [{"namespace": draw(NAME), "podLabels": {"app.kubernetes.io/name": draw(NAME)}}],
            "metrics": draw(st.lists(st.builds(lambda n: {"namespace": n}, NAME), max_size=2)),
        },
    }
    if provider:
        spec["routing"] = {"provider": provider, "host": f"{draw(NAME)}.example.com"}
        if provider == "gateway":
            spec["routing"]["gateway"] = {"name": draw(NAME)}
    low = 0 if idle else draw(st.integers(0, 2))
    spec["autoscaling"] = {
        "mode": "none" if idle else draw(st.sampled_from(["operator", "hpa", "none"])),
        "minReplicas": low,
        "maxReplicas": draw(st.integers(max(low, 1), 10)),
    }
    return {
        "apiVersion": "serving.unbusy.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": draw(NAME)},
        "spec": spec,
    }


# --- one value broken -------------------------------------------------------------------


@dataclass(frozen=True)
class Breaker:
    path: tuple[str | int, ...]  # under spec
    value: Any
    why: str

    @property
    def field(self) -> str:
        out = "spec"
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out


BAD_STRINGS = ("Not Valid!", "a b", "UPPER_and space", "-")


def _string_breakers(schema: dict[str, Any], path: tuple) -> Iterator[Breaker]:
    if "enum" in schema:
        yield Breaker(path, "no-such-choice", f"not one of {schema['enum']}")
    if "pattern" in schema:
        bad = next(s for s in BAD_STRINGS if not re.search(schema["pattern"], s))
        yield Breaker(path, bad, f"against the pattern {schema['pattern']}")
    if "maxLength" in schema:
        yield Breaker(path, "a" * (schema["maxLength"] + 1), f"longer than {schema['maxLength']}")
    yield Breaker(path, 12345, "a number where a string belongs")


def _number_breakers(schema: dict[str, Any], path: tuple) -> Iterator[Breaker]:
    step = 1 if schema["type"] == "integer" else 0.5
    if "minimum" in schema:
        below = schema["minimum"] if schema.get("exclusiveMinimum") else schema["minimum"] - step
        yield Breaker(path, below, f"below the minimum {schema['minimum']}")
    if "maximum" in schema:
        yield Breaker(path, schema["maximum"] + step, f"above the maximum {schema['maximum']}")
    yield Breaker(path, "not-a-number", "text where a number belongs")


def breakers(schema: dict[str, Any], path: tuple = ()) -> Iterator[Breaker]:
    """One breaker per constraint of the schema, at every depth."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return  # free-form Kubernetes objects: the API server checks them when the child is applied
    kind = schema.get("type")
    if kind == "object":
        if "properties" in schema:
            yield Breaker((*path, "bogusField"), 1, "an unknown field")
            for name, child in schema["properties"].items():
                yield from breakers(child, (*path, name))
        elif isinstance(schema.get("additionalProperties"), dict):
            yield from breakers(schema["additionalProperties"], (*path, "key"))
    elif kind == "array":
        yield from breakers(schema["items"], (*path, 0))
    elif kind in ("integer", "number"):
        yield from _number_breakers(schema, path)
    elif kind == "string":
        yield from _string_breakers(schema, path)
    elif kind == "boolean":
        yield Breaker(path, "yes", "text where a boolean belongs")


SCHEMA_BREAKERS = tuple(breakers(openapi_schema(InferenceServiceSpec)))

# Rules across fields, and those only the operator checks (a structural schema cannot state them).
RULE_BREAKERS = (
    Breaker(("variants",), [{"name": "a", "weight": 60}, {"name": "b", "weight": 60}], "weights add up to 120"),
    Breaker(("variants",), [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}], "a variant name twice"),
    Breaker(("variants", 0), {"name": "a", "weight": 100, "minReplicas": 4, "maxReplicas": 2}, "min > max"),
    Breaker(("autoscaling",), {"mode": "none", "minReplicas": 7, "maxReplicas": 3}, "min > max"),
    Breaker(("gpu",), {"count": 1, "migProfile": "1g.10gb", "product": "A100-80GB"}, "count and migProfile"),
    Breaker(("gpu",), {"migProfile": "1g.10gb"}, "migProfile without product"),
    Breaker(("gpu",), {"migProfile": "1g.5gb", "product": "A100-80GB"}, "a profile the product lacks"),
    Breaker(("alerts", "labels"), {"bad-name": "x"}, "not a Prometheus label name"),
    Breaker(("alerts", "labels"), {"__reserved": "x"}, "a reserved Prometheus label name"),
    Breaker(("networkPolicy", "serving", 0, "podLabels"), {"bad key!": "x"}, "not a label key"),
    Breaker(("autoscaling", "demand"), {"source": "promql", "query": "rate(x{ns=$nope}[1m])"}, "unknown placeholder"),
    Breaker(("autoscaling", "demand"), {"source": "promql", "rejectedQuery": "x"}, "promql without a query"),
)


def apply(manifest: dict[str, Any], breaker: Breaker) -> dict[str, Any]:
    """The manifest with the breaker's value set at its path, creating what is missing on the way."""
    broken = copy.deepcopy(manifest)
    node: Any = broken["spec"]
    for part, following in zip(breaker.path, breaker.path[1:], strict=False):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(part, int):
            while len(node) <= part:
                node.append(empty)
            node = node[part]
        else:
            if not isinstance(node.get(part), type(empty)):
                node[part] = empty
            node = node[part]
    last = breaker.path[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append({})
    node[last] = breaker.value
    return broken


@st.composite
def cases(draw: st.DrawFn, idle: bool = False) -> Case:
    manifest = draw(valid_manifests(idle=idle))
    # Mostly a schema constraint broken (there are many), else valid, else a rule broken (some only the
    # operator can check); hypothesis favours the first of these options.
    breaker = draw(st.sampled_from(SCHEMA_BREAKERS) | st.sampled_from(RULE_BREAKERS) | st.none())
    if breaker is None:
        return Case(manifest, None, "valid")
    return Case(apply(manifest, breaker), breaker.field, f"{breaker.field}: {breaker.why}")
