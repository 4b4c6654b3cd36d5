# The two commands a new user runs are `make demo` and `make test`; each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CRD := crds/serving.unbusy.dev_inferenceservices.yaml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

IMAGE := dist/unbusy.oci.tar

.PHONY: install test unit lint format crds docs promtool image image-tools demo demo-down

# The virtualenv is rebuilt only when pyproject.toml changes.
$(BIN)/unbusy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/unbusy

# promtool checks every generated alert rule; Debian's prometheus package carries it.
promtool:
	@command -v promtool >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@# The package starts a Prometheus service we do not want running on the test machine.
	@$(SUDO) systemctl stop prometheus >/dev/null 2>&1 || true

# The operator image without a Docker engine or a registry (operator/image.sh): mmdebstrap
# makes the root filesystem from Debian's packages, umoci packs it. Rebuilt (about a minute)
# only when what goes into it changes.
image-tools:
	@command -v mmdebstrap >/dev/null && command -v umoci >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends mmdebstrap umoci >/dev/null; }

$(IMAGE): operator/image.sh pyproject.toml README.md $(shell find operator/unbusy -type f -not -name '*.pyc') | $(BIN)/unbusy image-tools
	PYTHON=$(BIN)/python operator/image.sh $@

image: $(IMAGE)

test: install promtool image
	$(BIN)/pytest tests

unit: install promtool
	$(BIN)/pytest tests/unit -q -n auto

lint: install
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

format: install
	$(BIN)/ruff check --fix operator tests bench
	$(BIN)/ruff format operator tests bench

# Everything generated from the API models: the CRD (and the chart's copy, the dashboard) and
# the API reference. A unit test fails when either is stale.
crds: install
	$(BIN)/unbusy crd > $(CRD)
	charts/sync-crds.sh
	$(BIN)/python charts/dashboard.py
	$(BIN)/unbusy docs > docs/api-reference.md

docs: install
	$(BIN)/unbusy docs > docs/api-reference.md

# The testbed, the examples applied, and a load step played through the operator, Prometheus and
# the metrics emulator (docs/getting-started.md). matplotlib (the `plot` extra) draws its PNG.
demo: install promtool
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[plot]'
	testbed/demo.sh

demo-down:
	testbed/demo.sh down

include testbed/testbed.mk
