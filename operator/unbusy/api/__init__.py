"""The InferenceService API: pydantic models, the single source of truth for the CRD."""

from unbusy.api.base import API_VERSION, GROUP, KIND, PLURAL, VERSION
from unbusy.api.resource import InferenceService, ObjectMeta, SpecError, load
from unbusy.api.spec import InferenceServiceSpec
from unbusy.api.status import Condition, InferenceServiceStatus
from unbusy.api.variants import Variant

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Condition",
    "InferenceService",
    "InferenceServiceSpec",
    "InferenceServiceStatus",
    "ObjectMeta",
    "SpecError",
    "Variant",
    "load",
]
