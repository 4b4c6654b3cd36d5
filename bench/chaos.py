"""Chaos benchmark: the operator SIGKILLed at a seeded moment of a reconcile of N InferenceServices,
restarted, trial after trial (the fleet is created, scaled, given a second variant, back, ...), each
checked for exact convergence as tests/chaos checks its 3 (tests/fleet.py says what is checked).

    .venv/bin/python bench/chaos.py                       # 20 trials of 200 services
    .venv/bin/python bench/chaos.py --trials 2 --count 50 # smoke run

Prints one line per trial and a summary; exits 1 when a trial did not converge exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / d) for d in ("operator", "tests", "tests/integration", "tests/unit")]

from builders import CRD  # noqa: E402

from fleet import FLEET_NODES, Cluster, Fleet, kwok_nodes, node_manifests  # noqa: E402
from integration_fixtures import integration_conftest  # noqa: E402
from unbusy.demo.processes import OperatorProcess  # noqa: E402

# testbed/up.sh honours TESTBED_STATE_DIR (and TESTBED_*_PORT): a second testbed beside the first.
KUBECONFIG = Path(os.environ.get("TESTBED_STATE_DIR", ROOT / ".testbed")) / "kubeconfig"
NAMESPACE = "bench-chaos"


# The kubectl built with the testbed (the same version as its API server), not whatever is on PATH.
KUBECTL = integration_conftest()._bin_dir() / "kubectl"


def kubectl(*args: str, stdin: str | None = None) -> str:
    command = [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="InferenceServices in the fleet")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026, help="seeds the moment of each kill")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each trial may take to converge")
    args = parser.parse_args()

    subprocess.run([str(ROOT / "testbed" / "up.sh")], check=True, stdout=subprocess.DEVNULL)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("apply", "-f", "-", stdin=node_manifests(kwok_nodes(FLEET_NODES, gpus=1000)))
    kubectl("apply", "-f", "-", stdin=kubectl("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "operator.log"
        operator = OperatorProcess(KUBECONFIG, log, "--namespace", NAMESPACE).start()

        def delete_fleet() -> None:
            """While an operator runs, so that it takes kopf's finalizer off each one; in the foreground, so
            that their children are gone too (a next fleet's snapshot must not count them as its own)."""
            if operator.process.poll() is not None:
                operator.start()
            timeout = f"--timeout={int(args.timeout)}s"
            kubectl("delete", "infsvc", "--all", "-n", NAMESPACE, "--cascade=foreground", timeout)

        delete_fleet()  # what an interrupted run left
        fleet = Fleet(Cluster.connect(KUBECONFIG, NAMESPACE), args.count, args.seed)
        started = time.monotonic()
        try:
            for number in range(1, args.trials + 1):
                try:
                    result = fleet.trial(operator, converge_timeout=args.timeout)
                except TimeoutError as error:  # not converged: counted, and the next trial goes on from there
                    fleet.checked = None
                    print(f"trial {number:>2}: did not converge: {error}", flush=True)
                    continue
                results.append(result)
                print(f"trial {number:>2}: {result.line()}", flush=True)
            pool_full = log.read_text().count("Connection pool is full")
        finally:
            delete_fleet()
            operator.stop()
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")

    if not results:
        print(f"none of {args.trials} trials converged")
        return 1
    converged = [r.converged_s for r in results]
    failed = [r for r in results if r.problems]
    took = time.monotonic() - started
    print(f"\n{args.trials} trials of {args.count} InferenceServices in {took:.0f} s (seed {args.seed})")
    print(f"converged: {len(results)}; exactly as the specs ask: {len(results) - len(failed)}")
    print(f"killed after {min(r.struck_after for r in results)}-{max(r.struck_after for r in results)} reconciles")
    print(
        f"converged after the restart: min {min(converged):.1f} s, median {statistics.median(converged):.1f} s, "
        f"max {max(converged):.1f} s; settled (every one resumed): max {max(r.settled_s for r in results):.1f} s"
    )
    print(f"trials with a problem: {len(failed)}; 'Connection pool is full' in the operator's log: {pool_full}")
    summary = {"trials": args.trials, "converged": len(results), "exact": len(results) - len(failed)}
    summary |= {
        f"{k}_converged_s": round(f(converged), 1)
        for k, f in [("min", min), ("median", statistics.median), ("max", max)]
    }
    print(json.dumps(summary))
    return 1 if failed or len(results) < args.trials else 0


if __name__ == "__main__":
    sys.exit(main())
