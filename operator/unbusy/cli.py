"""The unbusy command line: run, render, crd, docs (and simulate, calibrate, demo)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from unbusy.api import KIND, SpecError, load
from unbusy.api.crd import custom_resource_definition
from unbusy.api.reference import reference
from unbusy.render import render_all
from unbusy.sim.cli import add_parser as add_simulate_parser


class UsageError(Exception):
    """A problem with the user's input; printed as one line, never as a traceback."""


def _documents(path: str) -> Iterator[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        documents = list(yaml.safe_load_all(text))
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML: {error}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == KIND:
            yield document


def _dump(manifests: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(m, sort_keys=False) for m in manifests)


def render(args: argparse.Namespace) -> str:
    manifests = []
    for path in args.filename:
        found = False
        for document in _documents(path):
            found = True
            name = document.get("metadata", {}).get("name", "?")
            try:
                manifests += render_all(load(document))
            except SpecError as error:
                raise UsageError("\n".join(f"{path}: {name}: {problem}" for problem in error.problems)) from None
        if not found:
            raise UsageError(f"{path}: no {KIND} in it")
    return _dump(manifests)


def crd(_: argparse.Namespace) -> str:
    return yaml.safe_dump(custom_resource_definition(), sort_keys=False)


def docs(_: argparse.Namespace) -> str:
    return reference()


def run(args: argparse.Namespace) -> str:
    """Run the operator until interrupted (kopf with our handlers, metrics and liveness)."""
    if args.kubeconfig:
        # kopf logs in on its own through the kubernetes client, which reads KUBECONFIG once,
        # when it is first imported: set it before importing either.
        os.environ["KUBECONFIG"] = args.kubeconfig
    import asyncio
    import getpass
    import logging
    import socket
    import time

    import kopf
    from prometheus_client import start_http_server

    from unbusy.controller import handlers  # noqa: F401 (registers the handlers)
    from unbusy.kube.peering import Peering

    kopf.configure(
        verbose=args.log_level == "debug",
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(args.log_level.upper())
    if args.log_level != "debug":  # one line per change from us, not one per kopf handler call
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    start_http_server(args.metrics_port)
    # Given to kopf rather than left to it, so the scaling loop knows its own peering record.
    identity = os.environ.get("POD_ID") or f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}/{time.time():.0f}"
    peering = Peering(args.peering, not args.namespace, identity, args.priority) if args.peering else None
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace or [],
            standalone=not args.peering,
            **({"peering_name": args.peering, "priority": args.priority, "identity": identity} if peering else {}),
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
            memo=kopf.Memo(
                kubeconfig=args.kubeconfig,
                namespaces=args.namespace or [],
                prometheus_url=args.prometheus_url,
                probe_models=args.probe_models,
                peering_lifetime=args.peering_lifetime,
                peering=peering,
                resync_seconds=args.resync_seconds,
            ),
        )
    )
    return ""


def demo(args: argparse.Namespace) -> str:
    """The closed loop and a load step through it, until SIGTERM (unbusy.demo.player)."""
    from unbusy.demo import player

    documents = list(_documents(args.filename))
    if not documents:
        raise UsageError(f"{args.filename}: no {KIND} in it")
    document = documents[0]
    document.setdefault("metadata", {}).setdefault("namespace", "default")
    try:
        manifest = player.demo_manifest(document)
        if args.manifest:
            return _dump([manifest])
        if not (args.kubeconfig and args.workdir):
            raise UsageError("--kubeconfig and --workdir: both are needed to play the demo (or --manifest)")
        player.run(
            Path(args.kubeconfig), load(manifest), Path(args.workdir), args.short, args.proxy, args.proxy_metrics
        )
    except SpecError as error:
        raise UsageError("\n".join(f"{args.filename}: {problem}" for problem in error.problems)) from None
    except ValueError as error:
        raise UsageError(f"{args.filename}: {error}") from None
    return ""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="unbusy", description="Keep Triton model serving out of 'server busy'.")
    root.add_argument("--version", action="version", version=f"unbusy {importlib.metadata.version('unbusy')}")
    commands = root.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run the operator")
    run_cmd.add_argument("-n", "--namespace", action="append", help="namespace to watch (repeat); all when omitted")
    run_cmd.add_argument("--kubeconfig", help="kubeconfig file; in-cluster or KUBECONFIG when omitted")
    run_cmd.add_argument(
        "--prometheus-url",
        default=os.environ.get("UNBUSY_PROMETHEUS_URL"),
        help="Prometheus the scaling loop reads (default: $UNBUSY_PROMETHEUS_URL)",
    )
    run_cmd.add_argument(
        "--probe-models",
        action=argparse.BooleanOptionalAction,
        default="KUBERNETES_SERVICE_HOST" in os.environ,
        help="ask Triton through each variant's Service whether the model is loaded (ModelReady condition); "
        "on by default inside a cluster, where Service names resolve",
    )
    run_cmd.add_argument(
        "--resync-seconds",
        type=float,
        default=60.0,
        help="recompute every InferenceService's status from its children this often, so it converges "
        "with no further event (after a restart, a missed event or a lost write); no write when unchanged",
    )
    run_cmd.add_argument("--peering", help="kopf peering name: replicas with the same name elect one active")
    run_cmd.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    run_cmd.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        help="seconds a replica's peering record stays valid; a standby takes over from an active replica "
        "that died without a goodbye (SIGKILL, lost node) within this plus a few seconds",
    )
    run_cmd.add_argument("--metrics-port", type=int, default=8080, help="Prometheus metrics port")
    run_cmd.add_argument("--health-port", type=int, default=8081, help="liveness endpoint port (/healthz)")
    run_cmd.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    run_cmd.add_argument("--log-format", choices=["plain", "json"], default="plain")
    run_cmd.set_defaults(run=run)
    render_cmd = commands.add_parser("render", help="print the manifests an InferenceService becomes")
    render_cmd.add_argument("-f", "--filename", action="append", required=True, help="manifest file, or - for stdin")
    render_cmd.set_defaults(run=render)
    crd_cmd = commands.add_parser("crd", help="print the InferenceService CustomResourceDefinition")
    crd_cmd.set_defaults(run=crd)
    docs_cmd = commands.add_parser("docs", help="print the API reference (docs/api-reference.md) in Markdown")
    docs_cmd.set_defaults(run=docs)
    add_simulate_parser(commands, UsageError)
    demo_cmd = commands.add_parser(
        "demo",
        help="play a load step through the operator, a Prometheus and the metrics emulator on a testbed "
        "(make demo), its load through the testbed's Gateway; runs until SIGTERM",
    )
    demo_cmd.add_argument("-f", "--filename", required=True, help="manifest of an InferenceService with a fallback")
    demo_cmd.add_argument("--kubeconfig", help="the testbed's kubeconfig")
    demo_cmd.add_argument("--workdir", help="where logs, Prometheus's data and the summary go")
    demo_cmd.add_argument("--short", action="store_true", help="a short step (2 minutes), for the test")
    demo_cmd.add_argument(
        "--proxy", default="127.0.0.1:18000", help="the Gateway's HTTP entry the load goes through (host:port)"
    )
    demo_cmd.add_argument(
        "--proxy-metrics", default="127.0.0.1:18082", help="the Gateway proxy's Prometheus metrics (host:port)"
    )
    demo_cmd.add_argument(
        "--manifest",
        action="store_true",
        help="print the InferenceService the demo applies (its model slowed) and exit",
    )
    demo_cmd.set_defaults(run=demo)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        sys.stdout.write(args.run(args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
