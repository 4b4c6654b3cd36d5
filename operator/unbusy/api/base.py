"""Shared pieces of the API models: the camelCase base model and Kubernetes-style types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema

GROUP = "serving.unbusy.dev"
VERSION = "v1alpha1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SINGULAR = "inferenceservice"
SHORT_NAME = "infsvc"
CATEGORY = "unbusy"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, stated once for both places that enforce it.

    `cel` goes into the CRD (x-kubernetes-validations) so the API server rejects bad specs;
    `holds` is the same rule in Python, so `unbusy render` and the operator reject them too.
    """

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str = ""

    def schema(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message} | ({"fieldPath": self.field_path} if self.field_path else {})


class RuleViolation(ValueError):
    """A broken Rule; carries the rule's field path so errors name the exact field."""

    def __init__(self, rule: Rule):
        self.field_path = rule.field_path
        super().__init__(rule.message)


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # JSON's types, as the API server checks them: no "yes" for true, no "5" for 5.
        strict=True,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self):
        for rule in self.rules:
            if not rule.holds(self):
                raise RuleViolation(rule)
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = handler.resolve_ref_schema(handler(core_schema))
        # pydantic leaves factory defaults out of the schema; the CRD needs them so the API
        # server fills in nested defaults for a section the user omitted.
        for name, field in cls.model_fields.items():
            if field.default_factory is not None:
                value = field.default_factory()
                if isinstance(value, ApiModel):
                    value = value.to_wire()
                elif isinstance(value, list):
                    value = [item.to_wire() if isinstance(item, ApiModel) else item for item in value]
                if value:
                    schema["properties"][field.alias or name]["default"] = value
        if cls.rules:
            schema["x-kubernetes-validations"] = [rule.schema() for rule in cls.rules]
        return schema

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# Kubernetes quantities ("500m", "16Gi") stay strings; gpu/ parses the ones it needs.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=32)]
# Percent or absolute count, as in a Deployment's rolling-update strategy.
PERCENT_OR_COUNT_PATTERN = r"^([0-9]+%?)$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"

# Free-form Kubernetes objects (tolerations, affinity, env) are passed through untouched:
# the API server validates them when the child is applied.
KubeObject = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]
