{{/* Names and labels. */}}
{{- define "djserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "djserve.fullname" -}}
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

{{- define "djserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "djserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An object's metadata annotations: (list $ own). commonAnnotations go on every object; the object's
own annotations (a Helm hook's, the Ingress's) win over them on the same key.
*/}}
{{- define "djserve.annotations" -}}
{{- $root := index . 0 }}
{{- $all := merge (deepCopy (index . 1 | default dict)) (deepCopy $root.Values.commonAnnotations) }}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Labels of a pod template beyond its selector labels: commonLabels, and podLabels over them. */}}
{{- define "djserve.podExtraLabels" -}}
{{- with merge (deepCopy .Values.podLabels) (deepCopy .Values.commonLabels) }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* Every pod of the release: the web pods and the migration Job's. */}}
{{- define "djserve.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "djserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The web pods only, so the Service, PDB and HPA never count a migration pod. */}}
{{- define "djserve.selectorLabels" -}}
{{ include "djserve.releaseSelectorLabels" . }}
app.kubernetes.io/component: web
{{- end }}

{{- define "djserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "djserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}. */}}
{{- define "djserve.image" -}}
{{- if .digest }}
{{- printf "%s:%s@%s" .repository .tag .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/*
The mounted settings file /etc/djserve/djserve.toml: kit settings at the top level, uvicorn options
under [uvicorn]. Keys come out sorted, so equal values always give equal text and an equal checksum.
*/}}
{{- define "djserve.toml" -}}
# djserve settings from the chart values preset, interface, djserve and uvicorn.
preset = {{ include "djserve.tomlValue" .Values.preset }}
{{- with .Values.interface }}
interface = {{ include "djserve.tomlValue" . }}
{{- end }}
{{- range $key, $value := .Values.djserve }}
{{ $key }} = {{ include "djserve.tomlValue" $value }}
{{- end }}
[uvicorn]
{{- range $key, $value := .Values.uvicorn }}
{{ $key }} = {{ include "djserve.tomlValue" $value }}
{{- end }}
{{- end }}

{{/*
One TOML value. JSON string escapes are valid TOML basic-string escapes. Values arrive as float64
(Helm decodes numbers through JSON), so whole numbers are written as TOML integers.
*/}}
{{- define "djserve.tomlValue" -}}
{{- if kindIs "string" . }}
{{- toJson . }}
{{- else if kindIs "bool" . }}
{{- ternary "true" "false" . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}
{{- if eq (float64 .) (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "slice" . }}
{{- $items := list }}
{{- range . }}{{ $items = append $items (include "djserve.tomlValue" .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else }}
{{- fail (printf "djserve.toml: cannot write %v (%s) as a TOML value" . (kindOf .)) }}
{{- end }}
{{- end }}

{{/*
uvicorn's timeout-graceful-shutdown: from the values, else the preset's. Helm cannot read the
package's presets.toml, so its values are copied here; tests/helm compares them with it.
*/}}
{{- define "djserve.gracefulShutdownSeconds" -}}
{{- $set := index .Values.uvicorn "timeout-graceful-shutdown" }}
{{- if kindIs "invalid" $set }}
{{- $presets := dict "production" 20 "proxy" 20 "websocket" 20 }}
{{- if not (hasKey $presets .Values.preset) }}
{{- fail (printf "preset %s has no graceful-shutdown limit (uvicorn then waits forever): set uvicorn.timeout-graceful-shutdown so terminationGracePeriodSeconds can cover it" .Values.preset) }}
{{- end }}
{{- get $presets .Values.preset }}
{{- else }}
{{- int64 $set }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the pod must outlive the preStop sleep and uvicorn's graceful shutdown,
or the kubelet's SIGKILL cuts requests that uvicorn was still finishing.
*/}}
{{- define "djserve.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.shutdown.preStopSleepSeconds (include "djserve.gracefulShutdownSeconds" .) .Values.shutdown.marginSeconds }}
{{- with .Values.terminationGracePeriodSeconds }}
{{- if lt (int64 .) (int64 $needed) }}
{{- fail (printf "terminationGracePeriodSeconds %d is too short: preStop sleep %d s + uvicorn timeout-graceful-shutdown %s s + margin %d s = %d s; raise it or leave it empty to compute it" (int64 .) (int64 $.Values.shutdown.preStopSleepSeconds) (include "djserve.gracefulShutdownSeconds" $) (int64 $.Values.shutdown.marginSeconds) (int64 $needed)) }}
{{- end }}
{{- int64 . }}
{{- else }}
{{- $needed }}
{{- end }}
{{- end }}

{{/* The port uvicorn binds inside the pod. */}}
{{- define "djserve.appPort" -}}
{{- int64 (index .Values.uvicorn "port" | default 8000) }}
{{- end }}

{{/* The port that serves traffic and probes: nginx's when the sidecar is on, else uvicorn's. */}}
{{- define "djserve.servingPort" -}}
{{- if .Values.nginx.enabled }}{{ int64 .Values.nginx.port }}{{ else }}{{ include "djserve.appPort" . }}{{ end }}
{{- end }}

{{/* Combinations that render but cannot serve. */}}
{{- define "djserve.validate" -}}
{{- $host := index .Values.uvicorn "host" }}
{{- if and (eq .Values.preset "proxy") (not .Values.nginx.enabled) (not $host) }}
{{- fail "preset proxy binds uvicorn to 127.0.0.1, which nothing outside the pod reaches: set nginx.enabled=true (the sidecar proxy) or uvicorn.host" }}
{{- end }}
{{- if and .Values.nginx.enabled (ne .Values.preset "proxy") }}
{{- fail "nginx.enabled needs preset proxy: only it trusts the sidecar's X-Forwarded-* headers and keeps uvicorn off the pod network" }}
{{- end }}
{{- if and .Values.nginx.enabled $host (ne $host "127.0.0.1") }}
{{- fail (printf "with nginx.enabled uvicorn must bind 127.0.0.1 (uvicorn.host is %s), or clients bypass the proxy" $host) }}
{{- end }}
{{- if and .Values.nginx.enabled (eq (int64 .Values.nginx.port) (int64 (include "djserve.appPort" .))) }}
{{- fail (printf "nginx.port and uvicorn's port are both %d: they share the pod's network" (int64 .Values.nginx.port)) }}
{{- end }}
{{- if and (eq .Values.preset "websocket") (eq .Values.interface "wsgi") }}
{{- fail "preset websocket needs interface auto, asgi or hybrid: WebSockets do not exist under WSGI" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not (include "djserve.metricsOn" .)) }}
{{- fail "metrics.serviceMonitor.enabled needs djserve's metrics: djserve.metrics is false" }}
{{- end }}
{{- if and .Values.metrics.scrapeAnnotations (not (include "djserve.metricsOn" .)) }}
{{- fail "metrics.scrapeAnnotations needs djserve's metrics: djserve.metrics is false" }}
{{- end }}
{{- end }}

{{/*
djserve's kit defaults the chart needs to know (the probe and metrics paths, metrics on, the
largest body), unless the djserve values set them. Copies of options.py's defaults: tests/helm
compares them with it.
*/}}
{{- define "djserve.healthPath" -}}
{{- index .Values.djserve "health_path" | default "/-/health" }}
{{- end }}

{{- define "djserve.readyPath" -}}
{{- index .Values.djserve "ready_path" | default "/-/ready" }}
{{- end }}

{{- define "djserve.metricsPath" -}}
{{- index .Values.djserve "metrics_path" | default "/-/metrics" }}
{{- end }}

{{/* "true" when djserve serves metrics, else empty. */}}
{{- define "djserve.metricsOn" -}}
{{- if or (not (hasKey .Values.djserve "metrics")) .Values.djserve.metrics }}true{{ end }}
{{- end }}

{{- define "djserve.maxBodyBytes" -}}
{{- if hasKey .Values.djserve "max_body_bytes" }}{{ int64 .Values.djserve.max_body_bytes }}{{ else }}104857600{{ end }}
{{- end }}

{{/*
The restricted Pod Security Standard, shared by every pod and container of the chart, with the
podSecurityContext and securityContext values merged over it key by key: a key given replaces the
default's whole value (so `capabilities` or `seccompProfile` are given whole). A key-by-key `set`
rather than mergeOverwrite, which would ignore a false or 0 given to override a default.
*/}}
{{- define "djserve.podSecurityContext" -}}
{{- $context := dict "runAsNonRoot" true "runAsUser" (int64 .Values.securityContext.runAsUser) "runAsGroup" (int64 .Values.securityContext.runAsGroup) "fsGroup" (int64 .Values.securityContext.runAsGroup) "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- range $key, $value := .Values.podSecurityContext }}
{{- $_ := set $context $key $value }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/* A container's securityContext: (list $ own), own keys over the securityContext value's. */}}
{{- define "djserve.containerSecurityContext" -}}
{{- $root := index . 0 }}
{{- $context := dict "runAsNonRoot" true "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "privileged" false "capabilities" (dict "drop" (list "ALL")) "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- range $key, $value := $root.Values.securityContext }}
{{- $_ := set $context $key $value }}
{{- end }}
{{- range $key, $value := index . 1 | default dict }}
{{- $_ := set $context $key $value }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/* User-given containers, (list $ containers), each with the chart's securityContext beneath its own. */}}
{{- define "djserve.userContainers" -}}
{{- $root := index . 0 }}
{{- range index . 1 }}
{{- $container := deepCopy . }}
{{- $_ := set $container "securityContext" (include "djserve.containerSecurityContext" (list $root .securityContext) | fromYaml) }}
{{- toYaml (list $container) }}
{{ end }}
{{- end }}

{{/* Where a secretFiles entry is mounted. */}}
{{- define "djserve.secretDir" -}}
/run/secrets/{{ .env | lower | replace "_" "-" }}
{{- end }}

{{/* The application's environment, shared by web pods and the migration Job. */}}
{{- define "djserve.env" -}}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range .Values.secretFiles }}
- name: {{ .env }}_FILE
  value: {{ printf "%s/%s" (include "djserve.secretDir" .) .key | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "djserve.secretVolumes" -}}
{{- range $i, $file := .Values.secretFiles }}
- name: secret-file-{{ $i }}
  secret:
    secretName: {{ $file.secretName }}
    defaultMode: 0440
    items:
      - key: {{ $file.key }}
        path: {{ $file.key }}
{{- end }}
{{- end }}

{{- define "djserve.secretMounts" -}}
{{- range $i, $file := .Values.secretFiles }}
- name: secret-file-{{ $i }}
  mountPath: {{ include "djserve.secretDir" $file }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "djserve.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
One kubelet httpGet probe: (list $ path timing). With the nginx sidecar uvicorn listens on 127.0.0.1
only, which the kubelet cannot reach, so the probes go through nginx, the way traffic comes.
*/}}
{{- define "djserve.probe" -}}
{{- $root := index . 0 -}}
httpGet:
  path: {{ index . 1 }}
  port: {{ include "djserve.servingPort" $root }}
  httpHeaders:
    - name: Host
      value: {{ $root.Values.probes.host }}
{{ toYaml (index . 2) }}
{{- end }}

{{/* Placement shared by the web pods and the migration Job's. */}}
{{- define "djserve.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
