#!/usr/bin/env bash
# Copy the generated CRDs into the Helm chart (`make crds` runs this after regenerating crds/).
# The chart's copy is never edited by hand; tests/unit/test_chart_files.py checks it is identical.
set -euo pipefail
cd "$(dirname "$0")/.."
cp crds/serving.unbusy.dev_inferenceservices.yaml charts/unbusy/crds/serving.unbusy.dev_inferenceservices.yaml
