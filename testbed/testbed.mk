# Make targets for the local Kubernetes testbed; included from the main Makefile:
#   include testbed/testbed.mk
# All paths are relative to this file, so the include works from any Makefile.

TESTBED_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
TESTBED_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: testbed-build testbed-up testbed-down testbed-clean testbed-status \
	testbed-test testbed-gomod

## Build kube-apiserver, kube-controller-manager, kube-scheduler, kwok and helm
## into ~/.cache/unbusy-testbed/<version>/bin (skipped when already built).
testbed-build:
	$(TESTBED_DIR)/build.sh

## Start etcd + control plane + kwok with fake GPU nodes; prints the kubeconfig path.
testbed-up:
	$(TESTBED_DIR)/up.sh

## Stop everything and drop the cluster state (a no-op when nothing runs).
testbed-down:
	$(TESTBED_DIR)/down.sh

## testbed-down, and also remove .testbed/ (certificates, logs).
testbed-clean:
	$(TESTBED_DIR)/down.sh --clean

testbed-status:
	$(TESTBED_DIR)/status.sh

## Integration tests against the testbed (the pytest fixture brings it up and down).
testbed-test:
	$(TESTBED_PYTHON) -m pytest -m integration tests/integration

## Regenerate testbed/go/go.mod + go.sum after bumping K8S_VERSION in versions.env.
testbed-gomod:
	$(TESTBED_DIR)/go/gen-gomod.sh
