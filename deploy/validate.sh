#!/usr/bin/env bash
# Checks the Kubernetes example offline: every manifest against the Kubernetes API schemas
# (kubernetes-validate --strict: unknown fields and wrong types fail), and the kustomization
# renders when kubectl is installed. The TOML inside config.yaml is parsed by meshscope's
# own config loader in a unit test (src/config.rs).
set -euo pipefail
cd "$(dirname "$0")/kubernetes"
# optional/ (a cert-manager Certificate) is left out: the schemas know no CRDs.
manifests=(namespace.yaml secrets.yaml config.yaml clickhouse.yaml collector.yaml api.yaml)
python3 -m kubernetes_validate --strict --quiet "${manifests[@]}"
# Every manifest is listed in the kustomization, and only those.
listed=$(sed -n 's/^  - \(.*\.yaml\)$/\1/p' kustomization.yaml | sort | tr '\n' ' ')
want=$(printf '%s\n' "${manifests[@]}" | sort | tr '\n' ' ')
if [ "$listed" != "$want" ]; then
  echo "kustomization.yaml lists: $listed; expected: $want" >&2
  exit 1
fi
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize . >/dev/null
fi
echo "deploy/kubernetes: ${#manifests[@]} manifests valid"
