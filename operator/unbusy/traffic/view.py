"""The InferenceService as its rollouts make it look (pure): each variant pinned to its stable
revision, and beside each running canary an extra variant, `<variant>-canary`, with the new
template and its share of the variant's weight. Every renderer then makes the canary's
Deployment, Service, ConfigMap and routes as it does for any variant, and the scaling loop
scales it like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from unbusy.api import InferenceService, SpecError, Variant
from unbusy.api.rollout import CANARY_SUFFIX
from unbusy.api.status import Revision, RevisionTemplate, RolloutState
from unbusy.render.meta import variant_name
from unbusy.traffic.rollout import ACTIVE, stable_revision

MAX_NAME = 63  # a Service name is a DNS label


def canary_name(variant: str) -> str:
    return variant + CANARY_SUFFIX


def _serving(variant: Variant, serves: RevisionTemplate) -> Variant:
    return variant.model_copy(
        update={
            "model_version": serves.model_version,
            "model_repository": serves.model_repository,
            "image": serves.image,
            "config": serves.config,
        }
    )


def canary_share(weight: int, state: RolloutState) -> int:
    """The canary's part of its variant's weight."""
    return round(weight * state.weight / 100)


def with_rollouts(
    isvc: InferenceService, states: Sequence[RolloutState], revisions: Sequence[Revision]
) -> InferenceService:
    if isvc.spec.rollout.canary is None:
        return isvc
    running = {s.variant: s for s in states if s.phase in ACTIVE}
    variants: list[Variant] = []
    for variant in isvc.spec.effective_variants():
        stable = stable_revision(tuple(revisions), variant.name)
        state = running.get(variant.name)
        if stable is None:  # not recorded yet: served as the spec says
            variants.append(variant)
            continue
        if state is None:
            variants.append(_serving(variant, stable.template))
            continue
        name = canary_name(variant.name)
        if len(variant_name(isvc, name)) > MAX_NAME:
            raise SpecError(
                [
                    f"spec.variants: {variant_name(isvc, name)} (the canary's Service) is longer than {MAX_NAME} "
                    "characters: shorten metadata.name or the variant's name"
                ]
            )
        share = canary_share(variant.weight, state)
        variants.append(_serving(variant, stable.template).model_copy(update={"weight": variant.weight - share}))
        variants.append(_serving(variant, state.template).model_copy(update={"name": name, "weight": share}))
    spec = isvc.spec.model_copy(update={"variants": variants})
    return isvc.model_copy(update={"spec": spec})
