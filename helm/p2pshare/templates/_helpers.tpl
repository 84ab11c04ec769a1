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
{{- $_ := set $cfg.peer "max_upload_bytes" (include "p2pshare.peers.maxUpload" . | int64) }}
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

{{/* Bytes of a Kubernetes quantity ("4Gi", "500M", "1073741824"); fails on anything else. */}}
{{- define "p2pshare.quantityBytes" -}}
{{- $q := toString .q }}
{{- $m := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $unit := trimPrefix $m $q }}
{{- $scale := dict "" 1 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if or (not $m) (not (hasKey $scale $unit)) }}
{{- fail (printf "%s: %q is not a size such as 4Gi or 500Mi" .key $q) }}
{{- end }}
{{- int64 (mulf (float64 $m) (float64 (get $scale $unit))) }}
{{- end }}

{{/* Bytes of a p2pshare size ("1GiB", "512 MiB", "1073741824"), as the services parse it; -1 for a
     percentage ("5%"). */}}
{{- define "p2pshare.sizeBytes" -}}
{{- $s := trim (toString .s) }}
{{- if hasSuffix "%" $s }}-1
{{- else }}
{{- $m := regexFind "^[0-9]+" $s }}
{{- $unit := lower (trim (trimPrefix $m $s)) }}
{{- $scale := dict "" 1 "b" 1 "kb" 1000 "kib" 1024 "mb" 1000000 "mib" 1048576 "gb" 1000000000 "gib" 1073741824 "tb" 1000000000000 "tib" 1099511627776 }}
{{- if or (not $m) (not (hasKey $scale $unit)) }}
{{- fail (printf "%s: %q is not a size such as 1GiB or 512MiB" .key $s) }}
{{- end }}
{{- mul (int64 $m) (get $scale $unit) }}
{{- end }}
{{- end }}

{{/* peers' storage: what /data can hold and what the peer is told.
     An emptyDir's sizeLimit is invisible to the peer (its free space is the node's disk), and
     going over it evicts the pod and wipes the share. So, with a sizeLimit:
       - transfer.min_free_space must be bytes (a percentage would be of the node's disk);
       - peer.max_upload_bytes + min_free_space must fit in half of sizeLimit, the other half
         left to the shared files; unset, max_upload_bytes is derived: min(1 GiB, sizeLimit/2 -
         min_free_space).
     A PersistentVolumeClaim is a file system of its own (min_free_space sees it): only
     max_upload_bytes + min_free_space <= persistence.size is required.
     Returns the max_upload_bytes to render. */}}
{{- define "p2pshare.peers.maxUpload" -}}
{{- $peer := (.Values.peers.config | default dict).peer | default dict }}
{{- $transfer := (.Values.peers.config | default dict).transfer | default dict }}
{{- $reserveText := $transfer.min_free_space | default "1GiB" }}
{{- $reserve := include "p2pshare.sizeBytes" (dict "s" $reserveText "key" "peers.config.transfer.min_free_space") | int64 }}
{{- $gib := 1073741824 }}
{{- $set := hasKey $peer "max_upload_bytes" }}
{{- $upload := $gib }}
{{- if $set }}{{ $upload = int64 $peer.max_upload_bytes }}{{ end }}
{{- if .Values.peers.persistence.enabled }}
{{- $size := include "p2pshare.quantityBytes" (dict "q" .Values.peers.persistence.size "key" "peers.persistence.size") | int64 }}
{{- if and (ge $reserve 0) (gt (add $upload $reserve) $size) }}
{{- fail (printf "peers.persistence.size (%s = %d bytes) cannot hold one upload of peers.config.peer.max_upload_bytes (%d) plus transfer.min_free_space (%s): raise the size or lower them" .Values.peers.persistence.size $size $upload $reserveText) }}
{{- end }}
{{- else if .Values.peers.emptyDir.sizeLimit }}
{{- $limitText := toString .Values.peers.emptyDir.sizeLimit }}
{{- $limit := include "p2pshare.quantityBytes" (dict "q" $limitText "key" "peers.emptyDir.sizeLimit") | int64 }}
{{- if lt $reserve 0 }}
{{- fail (printf "peers.config.transfer.min_free_space is %q, a percentage of the node's disk, but /data is an emptyDir limited to peers.emptyDir.sizeLimit=%s, which the peer cannot see: give min_free_space in bytes (e.g. \"1GiB\"), or set peers.emptyDir.sizeLimit=null, or use peers.persistence" $reserveText $limitText) }}
{{- end }}
{{- $half := div $limit 2 }}
{{- if not $set }}
{{- $upload = min $gib (sub $half $reserve) }}
{{- if le $upload 0 }}
{{- fail (printf "peers.emptyDir.sizeLimit=%s (%d bytes) is too small: going over it evicts the pod and wipes its share, and the peer cannot see it, so an upload plus the free space kept (transfer.min_free_space=%s) must fit in half of it (%d bytes), which leaves no room for an upload. Raise sizeLimit, lower min_free_space, or use peers.persistence (README, Deploy on Kubernetes)" $limitText $limit $reserveText $half) }}
{{- end }}
{{- end }}
{{- if or (le $upload 0) (gt (add $upload $reserve) $half) }}
{{- fail (printf "peers.emptyDir.sizeLimit=%s (%d bytes) is too small: going over it evicts the pod and wipes its share, and the peer cannot see it, so one upload (peers.config.peer.max_upload_bytes=%d) plus the free space kept (transfer.min_free_space=%s) must fit in half of it (%d bytes). Raise sizeLimit, lower max_upload_bytes or min_free_space, or use peers.persistence (README, Deploy on Kubernetes)" $limitText $limit $upload $reserveText $half) }}
{{- end }}
{{- end }}
{{- $upload }}
{{- end }}

{{/* The peers' StatefulSet as the cluster has it now (empty on install and in helm template). */}}
{{- define "p2pshare.peers.existingStatefulSet" -}}
{{- lookup "apps/v1" "StatefulSet" .Release.Namespace (include "p2pshare.peers.fullname" .) | toYaml }}
{{- end }}

{{/* The peers' volumeClaimTemplates in a comparable form: "none", or per claim its name, size
     (bytes), access modes, storage class and annotations. (dict "vcts" LIST) */}}
{{- define "p2pshare.peers.claimShape" -}}
{{- $out := list }}
{{- range .vcts }}
{{- $spec := .spec | default dict }}
{{- $size := include "p2pshare.quantityBytes" (dict "q" (dig "resources" "requests" "storage" "0" $spec) "key" "volumeClaimTemplates storage") }}
{{- $out = append $out (printf "claim %s: %s bytes, %s, class %q, annotations %s" .metadata.name $size (join "," ($spec.accessModes | default list)) ($spec.storageClassName | default "") (toJson (.metadata.annotations | default dict))) }}
{{- end }}
{{- if $out }}{{ join "; " $out }}{{ else }}none{{ end }}
{{- end }}

{{/* Kubernetes refuses any change to a StatefulSet's volumeClaimTemplates (turning
     peers.persistence on or off, another size, class or access mode): stop the upgrade with the
     way through instead of a failed release. (dict "ctx" $ "existing" STATEFULSET "wanted" LIST) */}}
{{- define "p2pshare.peers.claimGuard" -}}
{{- $ctx := .ctx }}
{{- if .existing.spec }}
{{- $was := include "p2pshare.peers.claimShape" (dict "vcts" (.existing.spec.volumeClaimTemplates | default list)) }}
{{- $want := include "p2pshare.peers.claimShape" (dict "vcts" .wanted) }}
{{- if ne $was $want }}
{{- $name := include "p2pshare.peers.fullname" $ctx }}
{{- fail (printf "peers.persistence: StatefulSet %s exists with volumeClaimTemplates [%s]; these values want [%s]. Kubernetes forbids changing a StatefulSet's volumeClaimTemplates, so this upgrade would fail. Way through: kubectl -n %s delete statefulset %s --cascade=orphan (the peers keep running), then run this helm upgrade again: the new StatefulSet adopts the pods and replaces them one at a time. Files on an emptyDir are lost when its pod is replaced (copy them off first, or put them again); existing PersistentVolumeClaims are kept and reused at their size (grow them with kubectl edit pvc where the StorageClass allows expansion). See README, Deploy on Kubernetes." $name $was $want $ctx.Release.Namespace $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The peers' volumeClaimTemplates (with peers.persistence.enabled). */}}
{{- define "p2pshare.peers.claims" -}}
- metadata:
    name: data
    labels:
      {{- include "p2pshare.componentSelector" (dict "ctx" . "component" "peer") | nindent 6 }}
    {{- with .Values.peers.persistence.annotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    accessModes:
      {{- toYaml .Values.peers.persistence.accessModes | nindent 6 }}
    {{- with .Values.peers.persistence.storageClassName }}
    storageClassName: {{ . }}
    {{- end }}
    resources:
      requests:
        storage: {{ .Values.peers.persistence.size }}
{{- end }}
