"""The prometheus-adapter rules shipped for hpa mode serve the metric names the HPAs ask for."""

from __future__ import annotations

import yaml
from builders import ROOT

from unbusy import series
from unbusy.render import hpa

RULES = yaml.safe_load((ROOT / "examples" / "prometheus-adapter-rules.yaml").read_text())
CONFIG = yaml.safe_load(RULES["data"]["config.yaml"])


def test_external_queue_metric_matches_the_hpa():
    (rule,) = CONFIG["externalRules"]
    assert rule["name"]["as"] == hpa.QUEUE_METRIC
    assert rule["seriesQuery"].startswith(series.PENDING_REQUESTS + "{")
    assert "inferenceservice" in rule["seriesQuery"] and "variant" in rule["seriesQuery"]


def test_pods_gpu_metric_matches_the_hpa_and_covers_mig():
    (rule,) = CONFIG["rules"]
    assert rule["name"]["as"] == hpa.GPU_METRIC
    assert series.GPU_UTIL in rule["metricsQuery"] and series.GR_ENGINE_ACTIVE in rule["metricsQuery"]
