"""Fields a spec sets to no effect: the operator says so in a Warning Event, once per generation."""

from __future__ import annotations

from builders import isvc, manifest

from unbusy.controller import reconcile

LLM = {
    "name": "llama",
    "repository": "pvc://models/llm",
    "config": {"backend": "vllm", "maxBatchSize": 0},
    "llm": {"slo": {"ttftP99Ms": 2000}, "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000}},
}


def warnings(monkeypatch, spec: dict, observed: int | None, generation: int = 2) -> list[tuple[str, str, str]]:
    sent = []
    monkeypatch.setattr(
        reconcile, "event", lambda api, body, kind, reason, message: sent.append((kind, reason, message))
    )
    body = manifest(spec) | {"status": {"observedGeneration": observed}}
    body["metadata"]["generation"] = generation
    reconcile._warn_ignored(None, body, isvc(spec))
    return sent


def test_an_llm_scaled_on_triton_queue_gets_a_warning_naming_the_field(monkeypatch):
    ((kind, reason, message),) = warnings(monkeypatch, {"model": LLM}, observed=1)
    assert (kind, reason) == ("Warning", "IgnoredField")
    assert message.startswith("spec.autoscaling.targets.queueDepthPerReplica: not read with spec.model.llm")


def test_once_per_generation_and_never_for_a_clean_spec(monkeypatch):
    assert warnings(monkeypatch, {"model": LLM}, observed=2) == []  # this generation was reconciled: said
    clean = {"model": LLM, "autoscaling": {"targets": {"queueDepthPerReplica": 0}}}
    assert warnings(monkeypatch, clean, observed=1) == []
    assert warnings(monkeypatch, {}, observed=None) == []  # not an LLM: Triton's queue is its signal
