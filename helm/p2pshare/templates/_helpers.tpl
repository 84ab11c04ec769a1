{{/* Names ---------------------------------------------------------------------------------- */}}
{{- define "p2pshare.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "p2pshare.fullname" -}}
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

{{- define "p2pshare.tracker.fullname" -}}
{{- printf "%s-tracker" (include "p2pshare.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Peer pod names are <this>-<ordinal>: keep room for the ordinal within 63 characters. */}}
{{- define "p2pshare.peers.fullname" -}}
{{- printf "%s-peer" (include "p2pshare.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "p2pshare.peers.headless" -}}
{{- printf "%s-headless" (include "p2pshare.peers.fullname" .) }}
{{- end }}

{{- define "p2pshare.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "p2pshare.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels ------------------------------------------------------------------------------- */}}
{{- define "p2pshare.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "p2pshare.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: p2pshare
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "p2pshare.selectorLabels" -}}
app.kubernetes.io/name: {{ include "p2pshare.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Component labels: (dict "ctx" $ "component" "tracker") */}}
{{- define "p2pshare.componentLabels" -}}
{{ include "p2pshare.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "p2pshare.componentSelector" -}}
{{ include "p2pshare.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Label that lets a pod through the NetworkPolicy as a client. */}}
{{- define "p2pshare.clientLabel" -}}
{{ include "p2pshare.fullname" . }}-client: "true"
{{- end }}

{{/* Image, by digest when one is given. No default registry has it: the user pushes it. */}}
{{- define "p2pshare.image" -}}
{{- if not .Values.image.repository }}
{{- fail "image.repository is not set: no registry publishes the p2pshare image. Build and push it (scripts/image.sh build --full; scripts/image.sh push REGISTRY/p2pshare:TAG), then --set image.repository=REGISTRY/p2pshare (and image.tag=TAG); see the README, Deploy on Kubernetes" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Security --------------------------------------------------------------------------- */}}
{{- define "p2pshare.authSecretName" -}}
{{- default (printf "%s-auth" (include "p2pshare.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "p2pshare.authSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "p2pshare.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "p2pshare.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "p2pshare.validate" -}}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) (not .Values.auth.token) }}
{{- fail "auth.enabled needs auth.token or auth.existingSecret" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (not .Values.tls.certManager.enabled) }}
{{- fail "tls.enabled needs tls.existingSecret or tls.certManager.enabled" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and (gt (int .Values.tracker.replicas) 1) (not .Values.tracker.redis.enabled) }}
{{- fail "tracker.replicas > 1 needs tracker.redis.enabled: the memory store lives in one tracker process, so replicas would split the network (see README \"Run several trackers\")" }}
{{- end }}
{{- if and .Values.tracker.redis.enabled (not .Values.tracker.redis.url) (not .Values.tracker.redis.existingSecret) }}
{{- fail "tracker.redis.enabled needs tracker.redis.url or tracker.redis.existingSecret" }}
{{- end }}
{{- end }}

{{/* Secret with the Redis URL (and password) of the tracker store. */}}
{{- define "p2pshare.redisSecretName" -}}
{{- .Values.tracker.redis.existingSecret | default (printf "%s-redis" (include "p2pshare.tracker.fullname" .)) }}
{{- end }}

{{/* URL of the tracker that peers and clients dial. */}}
{{- define "p2pshare.trackerEndpoint" -}}
{{- printf "%s://%s:%d" (ternary "https" "http" .Values.tls.enabled) (include "p2pshare.tracker.fullname" .) (int .Values.tracker.port) }}
{{- end }}

{{/* Env vars that point both services at the mounted auth and TLS files. The services read
     P2P_AUTH__TOKEN_FILE and P2P_TLS__* ([auth] and [tls] in config/*.toml). */}}
{{- define "p2pshare.securityEnv" -}}
{{- if .Values.auth.enabled }}
- name: P2P_AUTH__TOKEN_FILE
  value: /etc/p2pshare/auth/token
{{- if .Values.auth.protectMetrics }}
- name: P2P_AUTH__PROTECT_METRICS
  value: "true"
{{- end }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: P2P_TLS__CERT
  value: /etc/p2pshare/tls/tls.crt
- name: P2P_TLS__KEY
  value: /etc/p2pshare/tls/tls.key
- name: P2P_TLS__CA
  value: /etc/p2pshare/tls/ca.crt
{{- if .Values.tls.mutual }}
- name: P2P_TLS__CLIENT_CA
  value: /etc/p2pshare/tls/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{- define "p2pshare.securityMounts" -}}
{{- if .Values.auth.enabled }}
- name: auth
  mountPath: /etc/p2pshare/auth
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/p2pshare/tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "p2pshare.securityVolumes" -}}
{{- if .Values.auth.enabled }}
- name: auth
  secret:
    secretName: {{ include "p2pshare.authSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "p2pshare.authSecretKey" . }}
        path: token
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "p2pshare.tlsSecretName" . }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- end }}

{{/* env: map of NAME: value, rendered as a list. */}}
{{- define "p2pshare.envMap" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{/* Probes: (dict "ctx" $ "bin" "p2p-tracker" "port" 50051 "timing" .probes.readiness "kind" "grpc|tcp").
     Native gRPC probes (grpc.health.v1, service "") unless TLS is on: kubelet's gRPC probe has
     no TLS, so then the image's own health client runs (it trusts tls.ca). */}}
{{- define "p2pshare.probe" -}}
{{- if eq .kind "tcp" }}
tcpSocket:
  port: {{ .port }}
{{- else if .ctx.Values.tls.enabled }}
exec:
  command: [/usr/local/bin/{{ .bin }}, health, --addr, "localhost:{{ .port }}"]
{{- else }}
grpc:
  port: {{ .port }}
{{- end }}
{{ toYaml .timing }}
{{- end }}

{{/* Config files: chart defaults merged under the user's tracker.config / peers.config. */}}
{{- define "p2pshare.telemetryConfig" -}}
{{- $t := .Values.telemetry }}
{{- dict "log_level" $t.logLevel "log_format" $t.logFormat "otlp_endpoint" $t.otlpEndpoint "sampling_ratio" (float64 $t.samplingRatio) | toYaml }}
{{- end }}

{{/* Helm reads YAML numbers as floats: turn whole numbers back into integers (u64 keys like
     max_upload_bytes) except the keys that are floats in the services' config. */}}
{{- define "p2pshare.toToml" -}}
{{- $out := dict }}
{{- range $section, $keys := . }}
{{- $s := dict }}
{{- range $k, $v := $keys }}
{{- if and (kindIs "float64" $v) (ne $k "sampling_ratio") (eq (float64 (int64 $v)) $v) }}
{{- $_ := set $s $k (int64 $v) }}
{{- else }}
{{- $_ := set $s $k $v }}
{{- end }}
{{- end }}
{{- $_ := set $out $section $s }}
{{- end }}
{{- toToml $out }}
{{- end }}

{{/* The listen ports, files_dir and tracker endpoint always come from the chart (ports and
     Services must agree), whatever tracker.config / peers.config say. */}}
{{- define "p2pshare.trackerToml" -}}
{{- $cfg := mergeOverwrite (dict "telemetry" (include "p2pshare.telemetryConfig" . | fromYaml)) (deepCopy (.Values.tracker.config | default dict)) }}
{{- $_ := set $cfg "server" (merge (dict "listen" (printf "0.0.0.0:%d" (int .Values.tracker.port))) ($cfg.server | default dict)) }}
{{- if .Values.tracker.redis.enabled }}
{{- $redis := dict "store" "redis" "redis_prefix" .Values.tracker.redis.prefix }}
{{- if not .Values.tracker.redis.existingSecret }}{{ $_ := set $redis "redis_url" .Values.tracker.redis.url }}{{ end }}
{{- $_ := set $cfg "registry" (merge $redis ($cfg.registry | default dict)) }}
{{- end }}
{{- include "p2pshare.toToml" $cfg }}
{{- end }}

{{- define "p2pshare.peerToml" -}}
{{- $cfg := mergeOverwrite (dict "telemetry" (include "p2pshare.telemetryConfig" . | fromYaml)) (deepCopy (.Values.peers.config | default dict)) }}
{{- $_ := set $cfg "peer" (merge (dict "listen" (printf "0.0.0.0:%d" (int .Values.peers.port)) "files_dir" "/data") ($cfg.peer | default dict)) }}
{{- $_ := set $cfg "tracker" (merge (dict "endpoint" (include "p2pshare.trackerEndpoint" .)) ($cfg.tracker | default dict)) }}
{{- include "p2pshare.toToml" $cfg }}
{{- end }}

{{/* TLS and bearer token of the ServiceMonitor endpoints. */}}
{{- define "p2pshare.scrapeAuth" -}}
{{- if .Values.tls.enabled }}
scheme: https
tlsConfig:
  # Pods are scraped by IP; the certificate names the tracker Service.
  serverName: {{ include "p2pshare.tracker.fullname" . }}
  ca:
    secret: {name: {{ include "p2pshare.tlsSecretName" . }}, key: ca.crt}
  {{- if .Values.tls.mutual }}
  cert:
    secret: {name: {{ include "p2pshare.tlsSecretName" . }}, key: tls.crt}
  keySecret: {name: {{ include "p2pshare.tlsSecretName" . }}, key: tls.key}
  {{- end }}
{{- end }}
{{- if and .Values.auth.enabled .Values.auth.protectMetrics }}
authorization:
  type: Bearer
  credentials: {name: {{ include "p2pshare.authSecretName" . }}, key: {{ include "p2pshare.authSecretKey" . }}}
{{- end }}
{{- end }}

{{/* Where the tracker reads the Redis password: a file when the chart's Secret has one or an
     existing Secret is used (its password key is then required), else empty (no password). */}}
{{- define "p2pshare.redisPasswordFile" -}}
{{- if or .Values.tracker.redis.password .Values.tracker.redis.existingSecret -}}
/etc/p2pshare/redis/password
{{- end -}}
{{- end }}
