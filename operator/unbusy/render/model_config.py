"""Triton's model configuration, in a ConfigMap, when the spec manages it.

The ConfigMap carries the config twice: config.pbtxt, the form people read and Triton keeps
in its repository, and config.json, the form Triton's load API takes as an override (the
Deployment's postStart hook loads the model with it, whatever the repository's own config).
"""

from __future__ import annotations

import json
from typing import Any

from unbusy.api import InferenceService, Variant
from unbusy.api.model import ModelConfig
from unbusy.render import meta

CONFIG_PBTXT = "config.pbtxt"
CONFIG_JSON = "config.json"
VLLM_BACKEND = "vllm"


class Token(str):
    """A protobuf enum value: unquoted in text format, a plain string in JSON."""


class ProtoMap(dict):
    """A protobuf map field: key/value entries in text format, an object in JSON."""


def config_of(isvc: InferenceService, variant: Variant) -> ModelConfig | None:
    """The variant's own model configuration, else the InferenceService's."""
    return variant.config or isvc.spec.model.config


def manages_config(isvc: InferenceService, variant: Variant) -> bool:
    return bool(config_of(isvc, variant) or variant.model_version or isvc.spec.model.version)


def config_map_name(isvc: InferenceService, variant: str) -> str:
    return f"{meta.variant_name(isvc, variant)}-model"


def model_config(isvc: InferenceService, variant: Variant, gpu_count: int) -> dict[str, Any]:
    model = isvc.spec.model
    config: dict[str, Any] = {"name": model.name}
    version = variant.model_version or model.version
    if version:
        config["version_policy"] = {"specific": {"versions": [int(version)]}}
    managed = config_of(isvc, variant)
    if managed is None:
        return config
    if managed.backend:
        config["backend"] = managed.backend
    config["max_batch_size"] = managed.max_batch_size
    if managed.backend == VLLM_BACKEND:
        # The vLLM backend places its engine on the pod's GPUs itself (tensor_parallel_size in its
        # model.json): one instance for the model, not one per GPU.
        config["instance_group"] = [{"count": managed.instance_count, "kind": Token("KIND_MODEL")}]
    else:
        config["instance_group"] = [
            {"count": managed.instance_count, "kind": Token("KIND_GPU"), "gpus": list(range(gpu_count))}
        ]
    if managed.backend == VLLM_BACKEND and model.llm is not None:
        # Without it the vLLM backend exports none of the token counters and histograms Unbusy reads.
        config["parameters"] = ProtoMap({"REPORT_CUSTOM_METRICS": {"string_value": "true"}})
    batching = managed.dynamic_batching
    if batching is not None and managed.max_batch_size > 0:
        dynamic: dict[str, Any] = {
            "max_queue_delay_microseconds": batching.max_queue_delay_microseconds,
            # A bounded queue makes Triton answer "busy" at once rather than time out later.
            "default_queue_policy": {"max_queue_size": batching.max_queue_size, "timeout_action": Token("REJECT")},
        }
        if batching.preferred_batch_sizes:
            dynamic["preferred_batch_size"] = list(batching.preferred_batch_sizes)
        if batching.priority_levels:
            dynamic["priority_levels"] = batching.priority_levels
            dynamic["default_priority_level"] = batching.default_priority_level or batching.priority_levels
        config["dynamic_batching"] = dynamic
    if managed.response_cache:
        config["response_cache"] = {"enable": True}
    if managed.warmup:
        warmup = managed.warmup
        inputs = {
            i.name: {"data_type": Token(i.data_type), "dims": list(i.dims), "random_data": True} for i in warmup.inputs
        }
        config["model_warmup"] = [
            {
                "name": "unbusy-warmup",
                "batch_size": warmup.batch_size,
                "count": warmup.iterations,
                "inputs": ProtoMap(inputs),
            }
        ]
    return config


def _scalar(value: Any) -> str:
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def to_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """protobuf text format of a config dict (repeated messages as repeated blocks)."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, ProtoMap):
            inner = "  " * (indent + 1)
            for map_key, entry in value.items():
                body = f"{inner}key: {json.dumps(map_key)}\n{inner}value {{\n{to_pbtxt(entry, indent + 2)}{inner}}}\n"
                lines.append(f"{pad}{key} {{\n{body}{pad}}}\n")
        elif isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{to_pbtxt(value, indent + 1)}{pad}}}\n")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.extend(f"{pad}{key} {{\n{to_pbtxt(item, indent + 1)}{pad}}}\n" for item in value)
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]\n")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}\n")
    return "".join(lines)


def render(isvc: InferenceService, gpu_count: int) -> list[dict[str, Any]]:
    manifests = []
    for variant in isvc.spec.effective_variants():
        if not manages_config(isvc, variant):
            continue
        config = model_config(isvc, variant, gpu_count)
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta.metadata(isvc, config_map_name(isvc, variant.name), variant.name),
                "data": {CONFIG_PBTXT: to_pbtxt(config), CONFIG_JSON: json.dumps(config, sort_keys=True)},
            }
        )
    return manifests
