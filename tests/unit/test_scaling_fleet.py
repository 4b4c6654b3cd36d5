"""The fleet's read (scaling/fleet.py): one query per metric for any number of InferenceServices,
each variant handed exactly its own rows; checked against the variants' own queries by promtool."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml
from builders import isvc
from test_promtool import promtool, run, text  # noqa: F401  (promtool is a fixture)

from unbusy import series
from unbusy.render.edge import demand_queries
from unbusy.scaling import fleet, tokens
from unbusy.scaling.fleet import Answers, SourceError, VariantRead

NGINX = {"routing": {"host": "resnet.example.com"}}
TRAEFIK_ROUTING = {"host": "resnet.example.com", "gateway": {"name": "edge"}}
TWO = {"variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}
TEMPLATE = {"demand": {"source": "promql", "query": "sum(rate(my_requests{service=$service}[$window]))"}}
PER_POD = 8  # pending, GPU, request rate, queue time, served rate, least pending, refused rate, batch mean


def read(spec: dict, variant: str = "main", name: str = "resnet", namespace: str = "ml", **kw) -> VariantRead:
    service = isvc(spec, name=name, namespace=namespace)
    share = next(v.weight for v in service.spec.effective_variants() if v.name == variant) / 100
    demand = demand_queries(service, variant, share, window_seconds=60)
    return VariantRead(namespace, service.spec.model.name, kw.get("mig", False), kw.get("pods", {}), demand)


def fleet_of(n: int) -> list[VariantRead]:
    """n InferenceServices of two variants in three namespaces, half behind nginx, half without an edge."""
    return [
        read({**TWO, **(NGINX if i % 2 else {})}, variant, name=f"m{i}", namespace=f"team-{i % 3}")
        for i in range(n)
        for variant in ("stable", "canary")
    ]


def test_one_query_per_metric_whatever_the_fleets_size():
    small, large = fleet.plan(fleet_of(2)).queries, fleet.plan(fleet_of(1000)).queries
    # Triton's success and queue-full failure counters (no edge), nginx's request counter.
    assert len(large) == PER_POD + 3
    assert len(small) == len(large)
    mig = fleet.plan([*fleet_of(4), read({"gpu": {"migProfile": "1g.10gb", "product": "H100-80GB"}}, mig=True)])
    assert len(mig.queries) == PER_POD + 1 + 3  # MIG slices' GPU reading is GR engine activity


def test_traefik_is_one_query_whatever_the_fleets_size():
    def traefik_fleet(n: int) -> list[VariantRead]:
        spec = {**TWO, "routing": TRAEFIK_ROUTING, "autoscaling": {"demand": {"source": "traefik"}}}
        return [read(spec, v, name=f"m{i}", namespace=f"team-{i % 3}") for i in range(n) for v in ("stable", "canary")]

    small, large = fleet.plan(traefik_fleet(2)).queries, fleet.plan(traefik_fleet(1000)).queries
    assert len(large) == PER_POD + 1 == len(small)  # requests and 503s: one counter, grouped by service and code


def test_a_users_promql_runs_as_written_once_per_variant():
    templated = [read({"autoscaling": TEMPLATE}, name=f"t{i}") for i in range(3)]
    plan = fleet.plan([*fleet_of(10), *templated])
    assert len(plan.queries) == PER_POD + 3 + 3
    assert all(r.demand.requests in plan.queries for r in templated)


def test_promtool_accepts_every_fleet_query(promtool, tmp_path):  # noqa: F811
    gateway = {"host": "resnet.example.com", "provider": "gateway", "gateway": {"name": "edge"}}
    reads = [*fleet_of(4)] + [
        read({"routing": gateway, "autoscaling": {"demand": {"source": source}}}, name=source)
        for source in ("istio", "envoy-gateway", "traefik")
    ]
    templated = {"autoscaling": TEMPLATE | SEASONAL["autoscaling"]}
    reads += [seasonal_read({**NGINX, **SEASONAL}, name="s"), seasonal_read(templated, name="t")]
    queries = fleet.plan(reads).queries
    rules = [{"record": f"unbusy:fleet:q{i}", "expr": q} for i, q in enumerate(queries)]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "fleet", "rules": rules}]}))
    run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)


POD_A, POD_B = "resnet-main-7d9f8c6b5d-x2k4p", "resnet-main-7d9f8c6b5d-q8w7e"


def triton_row(pod: str, value: float, namespace: str = "ml", model: str = "resnet50") -> tuple[dict, float]:
    return {series.NAMESPACE: namespace, series.POD: pod, series.MODEL: model}, value


def test_each_variant_gets_the_samples_of_its_own_pods():
    ours = read({}, pods={POD_A: True, POD_B: False})
    twin = read({}, namespace="other", pods={POD_A: True})  # the same pod name in another namespace
    plan = fleet.plan([ours, twin])
    q = plan.per_pod[False]
    pending = [triton_row(POD_A, 12), triton_row(POD_B, 4), triton_row(POD_A, 99, namespace="other")]
    pending += [triton_row(POD_A, 1000, model="another-model")]
    gpu = [({series.NAMESPACE: "ml", series.POD: POD_A}, 75.0), ({series.NAMESPACE: "other", series.POD: POD_A}, 5.0)]
    rows = {query: [] for query in plan.queries} | {q.pending: pending, q.gpu_utilization: gpu}
    answers = Answers(plan, rows)
    b, a = answers.samples(ours)  # in the order of their names
    assert (a.ready, a.queue_depth, a.gpu_utilization, a.request_rate) == (True, 12, 75, None)
    assert (b.ready, b.queue_depth, b.gpu_utilization) == (False, 4, None)
    (only,) = answers.samples(twin)
    assert (only.queue_depth, only.gpu_utilization) == (99, 5)


def test_a_pod_reads_its_refusals_its_mean_batch_and_how_long_it_has_been_ready():
    ours = dataclasses.replace(read({}, pods={POD_A: True, POD_B: True}), ready_seconds={POD_A: 300.0, POD_B: 8.0})
    plan = fleet.plan([ours])
    q = plan.per_pod[False]
    assert 'reason="REJECTED"' in q.refused_rate and series.EXEC_COUNT in q.batch_mean
    rows = {query: [] for query in plan.queries} | {
        q.served_rate: [triton_row(POD_A, 1004.0), triton_row(POD_B, 34.0)],
        q.refused_rate: [triton_row(POD_B, 12.0)],  # POD_A has no series of refusals yet: none refused
        q.batch_mean: [triton_row(POD_A, 31.5), triton_row(POD_B, 32.0)],
    }
    b, a = Answers(plan, rows).samples(ours)
    assert (a.refused_rate, a.batch_mean, a.ready_seconds) == (0.0, 31.5, 300.0)
    assert (b.refused_rate, b.batch_mean, b.ready_seconds) == (12.0, 32.0, 8.0)


def test_a_service_that_sheds_reads_its_demands_latest_rate_too_one_query_per_counter():
    shedding = [dataclasses.replace(r, sheds=True) for r in fleet_of(4) if r.demand.source == "nginx"]
    plain = fleet.plan(fleet_of(4))
    both = fleet.plan([*fleet_of(4), *shedding])
    assert len(both.queries) == len(plain.queries) + 1  # nginx's requests counter, its irate
    (latest,) = both.latest.values()
    assert latest.startswith("sum by (") and "(irate(nginx_ingress_controller_requests" in latest
    ours = shedding[0]
    labels = {"exported_namespace": ours.namespace, "ingress": "m1", "service": "m1-stable", "canary": ""}
    rows = {query: [] for query in both.queries}
    rows[next(q for q in both.counters.values() if "nginx" in q)] = [(labels, 500.0)]
    rows[latest] = [(labels, 4000.0)]
    demand = Answers(both, rows).demand(ours)
    assert (demand.rps, demand.latest_rps) == (500.0, 4000.0)


def test_a_query_that_failed_fails_only_the_variants_that_need_it():
    plain, templated = read({}, pods={POD_A: True}), read({"autoscaling": TEMPLATE}, name="t", pods={POD_A: True})
    plan = fleet.plan([plain, templated])
    refused = SourceError("Prometheus at http://p refused a query: bad_data")
    answers = Answers(plan, {q: [] for q in plan.queries} | {templated.demand.requests: refused})
    assert answers.demand(plain) is None  # no series: no demand read, not 0
    with pytest.raises(SourceError, match=r"^spec\.autoscaling\.demand\.query: Prometheus at http://p refused"):
        answers.demand(templated)
    down = SourceError("Prometheus at http://p unreachable")
    with pytest.raises(SourceError, match="unreachable"):
        Answers(plan, dict.fromkeys(plan.queries, down)).samples(plain)


def test_due_in_the_same_wall_clock_slot_as_every_service_of_its_interval():
    assert fleet.due(None, 15, 1000.0)
    assert not fleet.due(1001.0, 15, 1004.9)  # slot [990, 1005)
    assert fleet.due(1001.0, 15, 1005.0)
    assert fleet.due(1004.0, 15, 1005.5)  # joined late in a slot: due with the others at the next


# --- demand: the fleet's grouped rows against each variant's own query, both by promtool ------

EVAL_AT = "5m"


def test_each_variant_reads_the_demand_its_own_query_reads(promtool, tmp_path):  # noqa: F811
    """Series of several InferenceServices, as ingress-nginx and Triton label them, through the
    fleet's grouped queries (promtool evaluates them; the rows it must return are checked too)
    and through each variant's own query: the same numbers."""
    ours = [read({**NGINX, **TWO}, v) for v in ("stable", "canary")]
    theirs = read({**NGINX, **TWO}, "stable", namespace="other")
    bare = read({}, "main", name="bare")  # no edge: Triton's counters
    plan = fleet.plan([*ours, theirs, bare])

    def nginx(namespace: str, service: str, canary: str, status: str, exported: str | None = None) -> str:
        where = {"namespace": namespace} | ({"exported_namespace": exported} if exported else {})
        labels = where | {"ingress": "resnet", "service": service, "canary": canary, "status": status}
        return text(series.NGINX_REQUESTS, labels)

    def triton(metric: str, **extra: str) -> str:
        labels = {"namespace": "ml", "inferenceservice": "bare", "variant": "main", "pod": POD_A, "model": "resnet50"}
        return text(metric, labels | extra)

    per_second = {  # 15 s apart: "0+150x40" grows by 10 per second
        nginx("ingress-nginx", "resnet-stable", "", "200", exported="ml"): 10,
        nginx("ingress-nginx", "resnet-stable", "", "503", exported="ml"): 2,
        nginx("ml", "resnet-stable", "ml-resnet-canary-http", "200"): 3,  # with honorLabels, via the canary
        nginx("ingress-nginx", "resnet-stable", "", "200", exported="other"): 50,
        triton(series.REQUEST_SUCCESS): 7,
        triton(series.REQUEST_FAILURE, reason=series.REJECTED): 1,
        triton(series.REQUEST_FAILURE, reason="OTHER"): 100,
    }
    given = [{"series": s, "values": f"0+{rps * 15:g}x40"} for s, rps in per_second.items()]
    expected = {"ml/stable": (12, 2), "ml/canary": (3, 0), "other/stable": (50, 0), "ml/bare-main": (8, 1)}
    variants = {"ml/stable": ours[0], "ml/canary": ours[1], "other/stable": theirs, "ml/bare-main": bare}
    # The rows promtool must answer to the fleet's queries: what the variants are picked from.
    nginx_row = {"ingress": "resnet", "namespace": "ingress-nginx", "service": "resnet-stable"}  # canary="": absent
    bare_row = {"namespace": "ml", "inferenceservice": "bare", "variant": "main", "model": "resnet50"}
    rows_by_metric = {
        series.NGINX_REQUESTS: [
            (nginx_row | {"exported_namespace": "ml", "status": "200"}, 10.0),
            (nginx_row | {"exported_namespace": "ml", "status": "503"}, 2.0),
            (nginx_row | {"namespace": "ml", "canary": "ml-resnet-canary-http", "status": "200"}, 3.0),
            (nginx_row | {"exported_namespace": "other", "status": "200"}, 50.0),
        ],
        series.REQUEST_SUCCESS: [(bare_row, 7.0)],
        series.REQUEST_FAILURE: [(bare_row, 1.0)],  # queue-full refusals only
    }
    rows = {q: rows_by_metric[metric] for (metric, _), q in plan.counters.items()}
    assert len(rows) == 3
    checks = [(q, [{"labels": text("", labels), "value": v} for labels, v in found]) for q, found in rows.items()]
    for name, r in variants.items():
        requests, rejected = expected[name]
        checks.append((r.demand.requests, [{"labels": "{}", "value": requests}]))
        checks.append((f"{r.demand.rejected} or vector(0)", [{"labels": "{}", "value": rejected}]))
    tests = {
        "rule_files": [],
        "tests": [
            {
                "interval": "15s",
                "input_series": given,
                "promql_expr_test": [{"expr": e, "eval_time": EVAL_AT, "exp_samples": s} for e, s in checks],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)

    # Those rows, picked per variant, read what each variant's own query reads.
    answers = Answers(plan, {q: [] for q in plan.queries} | rows)
    for name, r in variants.items():
        got = answers.demand(r)
        assert (got.rps, got.rejected_rps) == pytest.approx(expected[name]), name


def test_each_traefik_variant_matches_its_own_rows_as_its_own_query_does(promtool, tmp_path):  # noqa: F811
    """Series as Traefik labels them, through the fleet's one grouped query (promtool evaluates it
    and each variant's own query) and picked per variant by its pattern: the same numbers."""
    spec = {**TWO, "routing": TRAEFIK_ROUTING, "autoscaling": {"demand": {"source": "traefik"}}}
    variants = {
        "ml/stable": read(spec, "stable"),
        "ml/canary": read(spec, "canary"),
        "other/stable": read(spec, "stable", namespace="other"),
        "ml/resnet-stable": read({**spec, "variants": []}, "main", name="resnet-stable"),
    }
    plan = fleet.plan(variants.values())
    (query,) = plan.counters.values()

    def service(namespace: str, backend: str, index: int, entry_point: str = "web") -> str:
        router = f"httproute-{namespace}-{backend.rsplit('-', 1)[0]}-gw-{namespace}-edge-ep-{entry_point}-0"
        return f"{router}-799bcbf0c2317c5d1c93-svc-{namespace}-{backend}-{index}@kubernetesgateway"

    per_second = {
        (service("ml", "resnet-stable", 0), "200"): 10,
        (service("ml", "resnet-stable", 0), "503"): 2,
        (service("ml", "resnet-stable", 0, "websecure"), "200"): 1,
        (service("ml", "resnet-canary", 1), "200"): 3,
        (service("other", "resnet-stable", 0), "200"): 50,
        (service("ml", "resnet-stable-main", 0), "503"): 7,
    }
    labels = {k: {"service": s, "code": code} for k in per_second for s, code in [k]}
    given = [
        {"series": text(series.TRAEFIK_SERVICE_REQUESTS, labels[k] | {"method": "GET"}), "values": f"0+{r * 15:g}x40"}
        for k, r in per_second.items()
    ]
    rows = [(labels[k], float(r)) for k, r in per_second.items()]
    expected = {"ml/stable": (13, 2), "ml/canary": (3, 0), "other/stable": (50, 0), "ml/resnet-stable": (7, 7)}
    checks = [(query, [{"labels": text("", row), "value": v} for row, v in rows])]
    for name, r in variants.items():
        requests, rejected = expected[name]
        checks.append((r.demand.requests, [{"labels": "{}", "value": requests}]))
        checks.append((f"{r.demand.rejected} or vector(0)", [{"labels": "{}", "value": rejected}]))
    evaluation = [{"expr": e, "eval_time": EVAL_AT, "exp_samples": samples} for e, samples in checks]
    tests = {"rule_files": [], "tests": [{"interval": "15s", "input_series": given, "promql_expr_test": evaluation}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)

    answers = Answers(plan, {q: [] for q in plan.queries} | {query: rows})
    for name, r in variants.items():
        got = answers.demand(r)
        assert (got.rps, got.rejected_rps or 0) == pytest.approx(expected[name]), name


# --- the seasonal floor: the same counters a period ago, one query each for the whole fleet ---

SEASONAL = {"autoscaling": {"seasonal": {"enabled": True, "periodSeconds": 86400, "leadSeconds": 900}}}


def seasonal_read(spec: dict, variant: str = "main", **kw) -> VariantRead:
    found = read(spec, variant, **kw)
    service = isvc(spec, name=kw.get("name", "resnet"), namespace=kw.get("namespace", "ml"))
    return dataclasses.replace(found, seasonal=service.spec.autoscaling.seasonal)


def test_the_seasonal_floor_adds_one_query_per_demand_counter_whatever_the_fleets_size():
    def of(n: int) -> list[VariantRead]:
        plain = fleet_of(n)
        floored = [seasonal_read({**SEASONAL, **(NGINX if i % 2 else {})}, name=f"s{i}") for i in range(n)]
        return plain + floored

    small, large = fleet.plan(of(2)).queries, fleet.plan(of(500)).queries
    assert len(large) == len(small) == PER_POD + 3 + 3  # nginx's, Triton's two, each a period ago
    templated = seasonal_read({"autoscaling": TEMPLATE | SEASONAL["autoscaling"]}, name="t")
    assert len(fleet.plan([templated]).queries) == PER_POD + 2  # the user's query, and it a period ago


def test_each_variant_reads_the_most_demand_of_the_lead_a_day_ago(promtool, tmp_path):  # noqa: F811
    """A day of ingress-nginx series with a burst 60-75 minutes in: a day later, the floor at 50
    minutes sees the burst coming within its 15-minute lead; at 30 minutes it does not yet."""
    ours = seasonal_read({**NGINX, **SEASONAL})
    plan = fleet.plan([ours])
    (query,) = plan.past.values()
    labels = {"exported_namespace": "ml", "namespace": "ingress-nginx", "ingress": "resnet", "service": "resnet-main"}
    per_minute = "0+600x60 36000+2400x15 72000+600x1500"  # 10 rps, 40 rps for 15 min, 10 rps
    given = [{"series": text(series.NGINX_REQUESTS, labels | {"status": "200"}), "values": per_minute}]
    row = text("", labels)
    checks = [("1d50m", query, 40), ("1d30m", query, 10)]
    tests = {
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": given,
                "promql_expr_test": [
                    {"expr": e, "eval_time": at, "exp_samples": [{"labels": row, "value": v}]} for at, e, v in checks
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)
    answers = Answers(plan, {q: [] for q in plan.queries} | {query: [(labels, 40.0)]})
    assert answers.seasonal(ours) == pytest.approx(40)
    assert answers.seasonal(read(NGINX)) is None  # off


# --- LLM variants: their engine's signals, run as written, read into weighted tokens ------------

LLM = {
    "model": {
        "name": "llama",
        "repository": "pvc://model-store/llm",
        "config": {"backend": "vllm", "maxBatchSize": 0},
        "llm": {
            "slo": {"ttftP99Ms": 2000, "tpotP99Ms": 100},
            "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000},
            "kvCacheTokens": 400000,
        },
    },
    "autoscaling": {"targets": {"queueDepthPerReplica": 0, "gpuUtilizationPercent": 0}},
    **NGINX,
}


def llm_read(pods: dict[str, bool], spec: dict = LLM) -> VariantRead:
    service = isvc(spec, name="llama", namespace="ml")
    base = read(spec, name="llama", pods=pods)
    return dataclasses.replace(base, model="llama", llm=fleet.llm_read(service, "main", 1.0, 60))


def llm_rows(ours: VariantRead, plan) -> dict:
    """Two pods' token counters (POD_A's requests waited all window), TTFT over its SLO, 10 rps at nginx."""
    q = ours.llm.queries
    rows: dict = {query: [] for query in plan.queries}
    pod = lambda name, value: ({series.POD: name}, value)  # noqa: E731
    rows[q.prompt_tokens_per_pod] = [pod(POD_A, 6000.0), pod(POD_B, 5540.0)]
    rows[q.output_tokens_per_pod] = [pod(POD_A, 1100.0), pod(POD_B, 1010.0)]
    rows[q.finished_per_pod] = [pod(POD_A, 5.0), pod(POD_B, 5.0)]
    rows[q.least_waiting_per_pod] = [pod(POD_A, 2.0), pod(POD_B, 0.0)]
    rows[q.kv_used_per_pod] = [pod(POD_A, 0.95), pod(POD_B, 0.5)]
    rows[q.ttft_p99_seconds] = [({}, 2.5)]
    rows[q.tpot_p99_seconds] = [({}, float("nan"))]  # no decode yet: histogram_quantile's NaN reads as none
    nginx = next(query for query in plan.queries if "nginx_ingress_controller_requests" in query)
    rows[nginx] = [({"exported_namespace": "ml", "ingress": "llama", "service": "llama-main"}, 10.0)]
    return rows


def test_an_llm_variant_reads_tokens_per_pod_and_its_p99s_and_counts_in_weighted_tokens():
    ours = llm_read({POD_A: True, POD_B: True})
    plan = fleet.plan([ours, read({})])
    assert set(ours.llm.texts) <= set(plan.queries)
    assert len(plan.queries) == PER_POD + 3 + len(ours.llm.texts)  # the LLM's own beside the fleet's
    obs = Answers(plan, llm_rows(ours, plan)).llm(ours, current=2)
    assert obs.unit == "tok/s" and obs.capacity_hint == 2000
    # Pods in name order (POD_B's first): 5,540 prompt tokens at a tenth + 1,010 output tokens.
    assert [s.served_rate for s in obs.samples] == [pytest.approx(1564), pytest.approx(1700)]
    assert [s.queue_depth_min for s in obs.samples] == [0.0, 2.0]  # POD_A's requests waited all window
    # 10 rps x 326.4 tok/req, and the 2 waiting to be served within a minute.
    assert obs.demand.rps == pytest.approx(3264 + 2 * 326.4 / 60)
    assert "10 rps + 2 waiting x 326 tok/req" in obs.demand.source
    assert {g.name: g.value for g in obs.guards} == {"ttft p99": 2500.0, "kv cache": 95.0}


def test_an_llm_with_a_profile_prices_the_mix_its_pods_served_in_the_specs_unit():
    from test_llm_serving import PROFILE

    spec = copy.deepcopy(LLM)
    spec["model"]["llm"]["profile"] = PROFILE.to_document()["llm"]
    ours = llm_read({POD_A: True, POD_B: True}, spec)
    plan = fleet.plan([ours])
    obs = Answers(plan, llm_rows(ours, plan)).llm(ours, current=2)
    assert ours.llm.pricing == tokens.Pricing(PROFILE, 0.8)
    pods = [tokens.PodTokens(5540.0, 1010.0, 0.0), tokens.PodTokens(6000.0, 1100.0, 2.0)]
    costs = tokens.priced(ours.llm.costs, ours.llm.pricing, pods, 10.0, 2000.0)
    assert obs.capacity_hint == 2000 and costs.output_per_second != 2000
    cost = tokens.per_request(costs, 11540, 2110, 10)
    assert obs.demand.rps == pytest.approx(10 * cost + 2 * cost / 60)  # the 2 waiting within a minute


def test_with_a_profile_the_engines_size_histograms_spread_the_mix_it_prices():
    from test_llm_serving import PROFILE

    from unbusy.serving.llm import SizeHistogram

    spec = copy.deepcopy(LLM)
    spec["model"]["llm"]["profile"] = PROFILE.to_document()["llm"]
    ours, plain = llm_read({POD_A: True, POD_B: True}, spec), llm_read({POD_A: True, POD_B: True})
    q = ours.llm.queries
    # Read only where a profile prices the mix: the spec's one line needs no spread.
    assert {q.prompt_tokens_buckets, q.output_tokens_buckets} <= set(ours.llm.texts)
    assert plain.llm.queries.output_tokens_buckets not in plain.llm.texts
    assert q.output_tokens_buckets.startswith("sum by (le) (rate(vllm:request_generation_tokens_bucket{")
    plan = fleet.plan([ours])
    rows = llm_rows(ours, plan)
    # Requests per second at or below each bound, as `sum by (le)` answers (any order, +Inf as Prometheus writes it).
    le = lambda bound, value: ({series.LE: bound}, value)  # noqa: E731
    rows[q.prompt_tokens_buckets] = [le("+Inf", 10.0), le("500", 2.0), le("1000", 5.0), le("2000", 9.0)]
    rows[q.output_tokens_buckets] = [le("100", 3.0), le("200", 6.0), le("500", 9.5), le("+Inf", 10.0)]
    spread = Answers(plan, rows).llm(ours, current=2)
    exponential = Answers(plan, llm_rows(ours, plan)).llm(ours, current=2)
    pods = [tokens.PodTokens(5540.0, 1010.0, 0.0), tokens.PodTokens(6000.0, 1100.0, 2.0)]
    sizes = tokens.Sizes(
        SizeHistogram((500, 1000, 2000), (2.0, 3.0, 4.0, 1.0)), SizeHistogram((100, 200, 500), (3.0, 3.0, 3.5, 0.5))
    )
    costs = tokens.priced(ours.llm.costs, ours.llm.pricing, pods, 10.0, 2000.0, sizes)
    assert spread.demand.rps == pytest.approx(10 * tokens.per_request(costs, 11540, 2110, 10) * (1 + 2 / 600))
    assert spread.demand.rps != pytest.approx(exponential.demand.rps, rel=1e-3)
