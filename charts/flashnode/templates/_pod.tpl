{{/* The pod template shared by the Deployment and the StatefulSet. */}}
{{- define "flashnode.podTemplate" -}}
{{- if and .Values.sidecar.enabled (not (include "flashnode.jwtSecret" .)) }}
{{- fail "sidecar.enabled needs sidecar.jwtSecret or sidecar.existingJwtSecret (the engine API JWT shared with op-node)" }}
{{- end }}
metadata:
  labels:
    {{- include "flashnode.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "flashnode.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: flashnode
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - node
        - --config
        - /etc/flashnode/config.toml
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        - name: FLASHNODE_LOG_FORMAT
          value: {{ .Values.logFormat | quote }}
        - name: RUST_LOG
          value: {{ .Values.logLevel | quote }}
        {{- if not .Values.p2p.enabled }}
        # p2p off unless p2p.enabled (a preset's sequencer address would start the host). An
        # environment variable, not a config key: a binary without the flag ignores it.
        - name: FLASHNODE_P2P_DISABLE
          value: "true"
        {{- end }}
        {{- with include "flashnode.apiKeysSecret" . }}
        - name: FLASHNODE_WS_API_KEYS
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: ws-api-keys
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: rpc
          containerPort: {{ .Values.ports.rpc }}
          protocol: TCP
        - name: ws
          containerPort: {{ .Values.ports.ws }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.ports.metrics }}
          protocol: TCP
        {{- if .Values.p2p.enabled }}
        - name: p2p
          containerPort: {{ .Values.p2p.port }}
          protocol: TCP
        # discv5 node discovery binds the same port over UDP (p2p-discovery-addr's default).
        - name: p2p-udp
          containerPort: {{ .Values.p2p.port }}
          protocol: UDP
        {{- end }}
      startupProbe:
        httpGet:
          path: {{ .Values.probes.startup.path }}
          port: metrics
        periodSeconds: {{ .Values.probes.startup.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: {{ .Values.probes.liveness.path }}
          port: metrics
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: {{ .Values.probes.readiness.path }}
          port: metrics
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
        successThreshold: {{ .Values.probes.readiness.successThreshold }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/flashnode
          readOnly: true
        - name: data
          mountPath: /data
        - name: tmp
          mountPath: /tmp
    {{- if .Values.sidecar.enabled }}
    - name: {{ .Values.sidecar.name }}
      image: "{{ .Values.sidecar.image.repository }}:{{ .Values.sidecar.image.tag }}"
      imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
      args:
        - node
        - --datadir=/reth
        - --http
        - --http.addr=127.0.0.1
        - --http.port={{ .Values.sidecar.httpPort }}
        - --authrpc.addr=0.0.0.0
        - --authrpc.port={{ .Values.sidecar.authrpcPort }}
        - --authrpc.jwtsecret=/jwt/jwt.hex
        - --metrics=0.0.0.0:{{ .Values.sidecar.metricsPort }}
        {{- range .Values.sidecar.args }}
        - {{ . | quote }}
        {{- end }}
      ports:
        - name: authrpc
          containerPort: {{ .Values.sidecar.authrpcPort }}
          protocol: TCP
        - name: el-metrics
          containerPort: {{ .Values.sidecar.metricsPort }}
          protocol: TCP
      {{- with .Values.sidecar.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.sidecar.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: reth-data
          mountPath: /reth
        - name: jwt
          mountPath: /jwt
          readOnly: true
        - name: tmp
          mountPath: /tmp
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "flashnode.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if not .Values.persistence.enabled }}
    - name: data
      emptyDir: {}
    {{- if .Values.sidecar.enabled }}
    - name: reth-data
      emptyDir: {}
    {{- end }}
    {{- end }}
    {{- if .Values.sidecar.enabled }}
    - name: jwt
      secret:
        secretName: {{ include "flashnode.jwtSecret" . }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if eq .Values.podAntiAffinity "soft" }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "flashnode.selectorLabels" . | nindent 16 }}
  {{- else if eq .Values.podAntiAffinity "hard" }}
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "flashnode.selectorLabels" . | nindent 14 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range . }}
    - {{ toYaml (merge (dict) . (dict "labelSelector" (dict "matchLabels" (include "flashnode.selectorLabels" $ | fromYaml)))) | nindent 6 | trim }}
    {{- end }}
  {{- end }}
{{- end }}
