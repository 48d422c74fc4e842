{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "flashnode.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-name unless the release name already contains it. */}}
{{- define "flashnode.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flashnode.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flashnode.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flashnode.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flashnode.labels" -}}
helm.sh/chart: {{ include "flashnode.chart" . }}
{{ include "flashnode.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flashnode.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flashnode.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret holding the fan-out API keys, or "" when there are none. */}}
{{- define "flashnode.apiKeysSecret" -}}
{{- if .Values.fanout.existingSecret }}
{{- .Values.fanout.existingSecret }}
{{- else if .Values.fanout.apiKeys }}
{{- printf "%s-api-keys" (include "flashnode.fullname" .) }}
{{- end }}
{{- end }}

{{/* Secret holding the sidecar's engine JWT, or "" when there is none. */}}
{{- define "flashnode.jwtSecret" -}}
{{- if .Values.sidecar.existingJwtSecret }}
{{- .Values.sidecar.existingJwtSecret }}
{{- else if .Values.sidecar.jwtSecret }}
{{- printf "%s-jwt" (include "flashnode.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The node's config: the user's `config` map, with what the chart owns (listen addresses, the p2p
data directory, the sidecar's upstream) set from the other values. Keys the chart owns are refused in
`config` so the file never disagrees with the container ports.
*/}}
{{- define "flashnode.config" -}}
{{- $owned := list "rpc-addr" "flashblocks-addr" "metrics-addr" "p2p-addr" "p2p-data-dir" "config" "print-config" }}
{{- range $k, $v := .Values.config }}
{{- if not (regexMatch "^[a-z0-9-]+$" $k) }}
{{- fail (printf "config key %q is not a kebab-case flag name" $k) }}
{{- end }}
{{- if eq $k "ws-api-keys" }}
{{- fail "config.ws-api-keys would put secrets in a ConfigMap: use fanout.apiKeys or fanout.existingSecret" }}
{{- end }}
{{- if has $k $owned }}
{{- fail (printf "config.%s is set by the chart (use ports, p2p or persistence instead)" $k) }}
{{- end }}
{{- end }}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "rpc-addr" (printf "0.0.0.0:%d" (int .Values.ports.rpc)) }}
{{- $_ = set $cfg "flashblocks-addr" (printf "0.0.0.0:%d" (int .Values.ports.ws)) }}
{{- $_ = set $cfg "metrics-addr" (printf "0.0.0.0:%d" (int .Values.ports.metrics)) }}
{{- if .Values.p2p.enabled }}
{{- $_ = set $cfg "p2p-addr" (printf "0.0.0.0:%d" (int .Values.p2p.port)) }}
{{- /* The node key and the durable p2p store (recent blocks for alt-sync, bans): the PVC. */}}
{{- $_ = set $cfg "p2p-data-dir" "/data" }}
{{- end }}
{{- if .Values.sidecar.enabled }}
{{- $_ = set $cfg "upstream-rpc" (printf "http://127.0.0.1:%d" (int .Values.sidecar.httpPort)) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* One TOML value: strings JSON-quoted (a valid TOML basic string), whole floats as integers. */}}
{{- define "flashnode.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
{{- if eq (float64 $v) (float64 (int64 $v)) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "flashnode.tomlValue" $e }}{{ end }}]
{{- else }}{{ fail (printf "config values must be strings, numbers, booleans or lists, not %s" (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* The config as TOML: one `key = value` line per key, sorted. */}}
{{- define "flashnode.configToml" -}}
{{- $cfg := include "flashnode.config" . | fromYaml }}
{{- range $k := keys $cfg | sortAlpha }}
{{ $k }} = {{ include "flashnode.tomlValue" (get $cfg $k) }}
{{- end }}
{{- end }}

{{/* Relay pods: their own name label, so the nodes' Services never select them. */}}
{{- define "flashnode.relaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "flashnode.name" . }}-relay
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flashnode.relayLabels" -}}
helm.sh/chart: {{ include "flashnode.chart" . }}
{{ include "flashnode.relaySelectorLabels" . }}
app.kubernetes.io/component: relay
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The relay tier's upstream: relay.upstreamUrl, else the nodes' fan-out Service. */}}
{{- define "flashnode.relayUpstream" -}}
{{- if .Values.relay.upstreamUrl }}
{{- .Values.relay.upstreamUrl }}
{{- else }}
{{- printf "ws://%s.%s.svc:%d/ws" (include "flashnode.fullname" .) .Release.Namespace (int .Values.ports.ws) }}
{{- end }}
{{- end }}
