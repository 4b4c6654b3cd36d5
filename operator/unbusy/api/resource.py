"""The whole InferenceService object, and loading it from a manifest with readable errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unbusy.api.base import API_VERSION, DNS_LABEL_PATTERN, KIND, ApiModel, RuleViolation
from unbusy.api.spec import InferenceServiceSpec
from unbusy.api.status import InferenceServiceStatus


class ObjectMeta(BaseModel):
    """The metadata render needs; everything else in metadata is ignored, not rejected."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Children are named <name>-<variant>-<suffix>; 40 leaves room within 63 characters.
    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=40)
    namespace: str = Field("default", pattern=DNS_LABEL_PATTERN, max_length=63)
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class InferenceService(ApiModel):
    api_version: Literal[API_VERSION] = Field(API_VERSION, description="serving.unbusy.dev/v1alpha1")
    kind: Literal[KIND] = Field(KIND, description="InferenceService")
    metadata: ObjectMeta
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None


class SpecError(ValueError):
    """A spec that cannot be served, with every problem named by its field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe(error: ValidationError) -> list[str]:
    """pydantic's errors as 'spec.gpu.count: Input should be ...' lines."""
    problems = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "literal_error":
            message = f"must be one of {item['ctx']['expected']}"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        path = _field_path(item["loc"])
        error = item.get("ctx", {}).get("error")
        if isinstance(error, RuleViolation) and error.field_path:
            path += error.field_path
        problems.append(f"{path}: {message}" if path else message)
    return problems


def load(manifest: dict[str, Any]) -> InferenceService:
    """Validate a manifest; raise SpecError naming each bad field."""
    try:
        return InferenceService.model_validate(manifest)
    except ValidationError as error:
        raise SpecError(describe(error)) from None
