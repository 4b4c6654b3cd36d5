"""Deciding whether a child needs a write: the live object must contain what we render."""

from __future__ import annotations

from unbusy.kube.children import contains


def test_server_added_fields_do_not_count_as_drift():
    live = {"spec": {"replicas": 2, "progressDeadlineSeconds": 600, "template": {"x": 1}}, "status": {}}
    assert contains(live, {"spec": {"replicas": 2}})


def test_changed_or_missing_fields_are_drift():
    assert not contains({"spec": {"replicas": 2}}, {"spec": {"replicas": 3}})
    assert not contains({"spec": {}}, {"spec": {"replicas": 3}})


def test_empty_lists_and_maps_the_server_omits_are_not_drift():
    assert contains({"containers": [{"name": "triton"}]}, {"containers": [{"name": "triton", "env": []}]})
    assert contains({"metadata": {}}, {"metadata": {"annotations": {}}})


def test_lists_compare_item_by_item_and_by_length():
    assert contains([{"a": 1, "b": 2}], [{"a": 1}])
    assert not contains([{"a": 1}, {"a": 2}], [{"a": 1}])


def test_numbers_the_server_renders_as_strings_match():
    assert contains({"limits": {"nvidia.com/gpu": "1"}}, {"limits": {"nvidia.com/gpu": 1}})
