#!/usr/bin/env bash
# Offline validation of the deployment code (deploy/): what can be checked without a cluster.
#
#   1. Render every Kustomize tree (both overlays, the base, the Argo CD apps) with
#      `kubectl kustomize`.
#   2. Validate every core Kubernetes object against the OpenAPI schemas of Kubernetes
#      $K8S_VERSION with `kubernetes-validate --strict` (unknown fields fail).
#   3. Validate every custom resource (Argo CD, Argo Rollouts, cert-manager, External Secrets)
#      with `check-jsonschema` against the CRD schemas vendored in deploy/schemas/; a custom
#      resource without a vendored schema fails.
#   4. The Terraform module's own check (deploy/terraform/check.sh), when it exists.
#
# Needs kubectl and the validators' venv (`make install-deploy` creates .venv-deploy).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEPLOY_VENV=${DEPLOY_VENV:-$ROOT/.venv-deploy}
# The Kubernetes version the manifests are written for (a minor kubernetes-validate ships).
K8S_VERSION=${K8S_VERSION:-1.33.0}
KUBECTL=${KUBECTL:-kubectl}

TREES=(
  deploy/k8s/base
  deploy/k8s/overlays/staging
  deploy/k8s/overlays/production
  deploy/argocd/apps
)
# Single files outside any Kustomize tree.
FILES=(
  deploy/argocd/root.yaml
)

command -v "$KUBECTL" >/dev/null || { echo "ERROR: kubectl not found (apt-get install kubectl)" >&2; exit 1; }
for tool in kubernetes-validate check-jsonschema python; do
  [ -x "$DEPLOY_VENV/bin/$tool" ] || { echo "ERROR: $DEPLOY_VENV/bin/$tool missing: make install-deploy" >&2; exit 1; }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Split a stream of YAML documents into one file per object: core objects under core/, custom
# resources under cr/<group>/<kind>_<version>/ (the vendored schema's name). One object per
# file, because check-jsonschema validates one document per file.
split_objects() {
  local source=$1 out=$2
  "$DEPLOY_VENV/bin/python" - "$source" "$out" <<'PY'
import pathlib
import sys

import yaml

CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}
source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
count = 0
for index, doc in enumerate(yaml.safe_load_all(source.read_text())):
    if not doc:
        continue
    group, _, version = doc["apiVersion"].rpartition("/")
    kind = doc["kind"]
    name = doc["metadata"]["name"]
    if group in CORE_GROUPS:
        folder = out / "core"
    else:
        folder = out / "cr" / group / f"{kind.lower()}_{version}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{index:03d}-{kind}-{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    count += 1
print(f"{count} objects")
PY
}

status=0
validate_rendered() {
  local label=$1 rendered=$2 out=$3
  printf '%s: ' "$label"
  split_objects "$rendered" "$out"
  if [ -d "$out/core" ]; then
    if ! "$DEPLOY_VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$out"/core/*.yaml; then
      echo "FAIL: $label: core objects do not validate against Kubernetes $K8S_VERSION" >&2
      status=1
    fi
  fi
  local folder group kind_version schema
  for folder in "$out"/cr/*/*; do
    [ -d "$folder" ] || continue
    group=$(basename "$(dirname "$folder")")
    kind_version=$(basename "$folder")
    schema="deploy/schemas/$group/$kind_version.json"
    if [ ! -f "$schema" ]; then
      echo "FAIL: $label: no vendored schema $schema for $(ls "$folder" | head -n1)" >&2
      status=1
      continue
    fi
    if ! "$DEPLOY_VENV/bin/check-jsonschema" --schemafile "$schema" "$folder"/*.yaml; then
      echo "FAIL: $label: $group $kind_version does not validate against $schema" >&2
      status=1
    fi
  done
}

echo "== Kubernetes manifests (kubectl kustomize; kubernetes-validate $K8S_VERSION --strict; check-jsonschema)"
n=0
for tree in "${TREES[@]}"; do
  n=$((n + 1))
  rendered="$WORK/render-$n.yaml"
  if ! "$KUBECTL" kustomize "$tree" >"$rendered"; then
    echo "FAIL: kubectl kustomize $tree" >&2
    status=1
    continue
  fi
  validate_rendered "$tree" "$rendered" "$WORK/objects-$n"
done
for file in "${FILES[@]}"; do
  n=$((n + 1))
  validate_rendered "$file" "$file" "$WORK/objects-$n"
done

# --- Terraform (deploy/terraform/): its own check, when the module is there -------------------
if [ -x deploy/terraform/check.sh ]; then
  echo "== Terraform (deploy/terraform/check.sh)"
  deploy/terraform/check.sh || status=1
fi

if [ "$status" -ne 0 ]; then
  echo "deploy check: FAILED" >&2
  exit "$status"
fi
echo "deploy check: OK"
