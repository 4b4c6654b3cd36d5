"""The operator's ModelReady condition, from its tritonclient check against a real Triton."""

from __future__ import annotations

import pytest

from unbusy.health import model_condition
from unbusy.triton import readiness

pytestmark = pytest.mark.contract


def test_model_loaded_makes_the_condition_true(triton):
    answers = {"main": readiness.check(triton.http_url, "add_sub", triton.model_version)}
    assert model_condition(answers)[:3] == ("ModelReady", "True", "ModelLoaded")


def test_a_variant_whose_model_is_missing_is_named_with_tritons_reason(triton):
    answers = {
        "stable": readiness.check(triton.http_url, "add_sub"),
        "canary": readiness.check(triton.http_url, "add_sub", "7"),
    }
    type_, status, reason, message = model_condition(answers)
    assert (type_, status, reason) == ("ModelReady", "False", "ModelNotReady")
    assert message.startswith("variant canary: ") and "stable" not in message


def test_an_unreachable_service_is_not_ready_with_a_reason():
    answers = {"main": readiness.check("127.0.0.1:1", "add_sub", timeout_s=1)}
    _, status, _, message = model_condition(answers)
    assert status == "False" and "unreachable" in message
