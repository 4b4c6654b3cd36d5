"""One InferenceService in a closed loop on a cluster of kwok pods: the metrics emulator serving
Triton's, the DCGM exporter's and (behind ingress-nginx) the edge's metrics for its live pods,
a Prometheus scraping the emulator, and the operator reading that Prometheus."""

from __future__ import annotations

from pathlib import Path

from unbusy.api import InferenceService
from unbusy.api.model import Serving
from unbusy.demo.processes import OperatorProcess, Prometheus
from unbusy.kube.client import connect
from unbusy.kube.loopback import publish_loopback_endpoints
from unbusy.kube.observe import live_pods, nginx_weights, ready_addresses
from unbusy.serving.llm import LlmProfile
from unbusy.serving.model import from_service
from unbusy.sim.config import fallback_model
from unbusy.sim.emulator import Emulator, LlmEmulator
from unbusy.sim.llm import MixShift

DEFAULT_MIX = MixShift("conv")  # an LLM's requests: the Azure trace's conversations


def emulator_for(
    kubeconfig: Path,
    isvc: InferenceService,
    rps: float,
    service: Serving | None = None,
    fallback: Serving | None = None,
    llm: LlmProfile | None = None,
    mix: MixShift = DEFAULT_MIX,
    answer: bool = False,
) -> Emulator:
    """The emulator for `isvc`'s live pods at `rps`, serving as `service` (else the spec's own profile),
    or, for an LLM (spec.model.llm), as `llm`'s engine with request sizes from `mix`.
    With `answer`, every Ready pod also answers HTTP inference requests on its address (sim/answer.py).
    With routing.provider nginx, load follows the live Ingresses' weights and the edge is counted.
    With spec.fallback and `fallback`, the fallback variant's replicas serve as that smaller model."""
    api = connect(str(kubeconfig))  # the emulator's own: it reads from its ticking thread
    namespace, name = isvc.metadata.namespace, isvc.metadata.name
    routed = isvc.spec.routing is not None and isvc.spec.routing.effective_provider == "nginx"
    common = {
        "namespace": namespace,
        "inference_service": name,
        "model": isvc.spec.model.name,
        "rps": rps,
        "isvc": isvc if routed else None,
        "weights": (lambda: nginx_weights(api, namespace, name)) if routed else None,
    }
    pods = lambda: live_pods(api, namespace, name)  # noqa: E731
    if isvc.spec.model.llm is not None:
        if llm is None:
            raise ValueError("spec.model.llm: the emulator serves an LLM as a measured engine: pass its LlmProfile")
        return LlmEmulator(pods, profile=llm, mix=mix, **common)
    smaller = fallback_model(isvc, fallback) if fallback else None

    def answered() -> dict[str, tuple[str, str]]:
        """The Ready pods' addresses; the proxy in front learns them from their EndpointSlices."""
        publish_loopback_endpoints(api, namespace, name)
        return ready_addresses(api, namespace, name)

    return Emulator(
        pods,
        service=from_service(isvc, service),
        variant_services={isvc.spec.fallback.variant: smaller} if smaller else None,
        answer=answered if answer else None,
        **common,
    )


class ClosedLoop:
    """The emulator, Prometheus and the operator (watching `isvc`'s namespace only) for one InferenceService;
    with `proxy_metrics`, the pods answer a real proxy's requests and Prometheus scrapes the proxy too.
    start() starts them in that order; stop() stops them in reverse. Logs and data go to `workdir`."""

    def __init__(
        self,
        kubeconfig: Path,
        isvc: InferenceService,
        rps: float,
        workdir: Path,
        prometheus_binary: str,
        fallback: Serving | None = None,
        llm: LlmProfile | None = None,
        mix: MixShift = DEFAULT_MIX,
        service: Serving | None = None,
        proxy_metrics: str | None = None,
    ):
        self.kubeconfig, self.workdir = kubeconfig, workdir
        self.namespace, self.name = isvc.metadata.namespace, isvc.metadata.name
        # Behind a real proxy (its metrics at `proxy_metrics`, host:port), the pods answer its requests.
        answer = proxy_metrics is not None
        self.emulator = emulator_for(kubeconfig, isvc, rps, service, fallback, llm, mix, answer)
        targets = [self.emulator.address, *([proxy_metrics] if proxy_metrics else [])]
        self.prometheus = Prometheus(prometheus_binary, workdir, targets)
        namespaced = ("--prometheus-url", self.prometheus.url, "--namespace", self.namespace)
        self.operator = OperatorProcess(kubeconfig, workdir / "operator.log", *namespaced)

    def start(self) -> ClosedLoop:
        self.emulator.start()
        self.prometheus.start()
        self.operator.start()
        return self

    def stop(self) -> None:
        self.operator.stop()
        self.prometheus.stop()
        self.emulator.stop()
