#!/usr/bin/env bash
# Show which testbed components run and, when the API server answers, the nodes.
# Exit status 0 only when every component runs and the API server is ready.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ok=0
for c in "${COMPONENTS[@]}"; do
  if pid="$(component_pid "$c")"; then
    printf '%-24s running (pid %s)\n' "$c" "$pid"
  else
    printf '%-24s stopped\n' "$c"
    ok=1
  fi
done
if kube get --raw /readyz >/dev/null 2>&1; then
  echo "kubeconfig: $KUBECONFIG_PATH"
  kube get nodes -L topology.kubernetes.io/zone,nvidia.com/gpu.product
else
  ok=1
fi
exit "$ok"
