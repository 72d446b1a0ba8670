{{/* Chart name. */}}
{{- define "jetinfer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name, at most 63 characters. */}}
{{- define "jetinfer.fullname" -}}
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

{{/* Common labels; pass (dict "root" $ "component" "worker"). */}}
{{- define "jetinfer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: jetinfer
{{ include "jetinfer.selectorLabels" . }}
{{- end }}

{{/* Selector labels; pass (dict "root" $ "component" "worker" "model" "digits"). */}}
{{- define "jetinfer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jetinfer.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .model }}
jetinfer.dev/model: {{ . }}
{{- end }}
{{- end }}

{{/* Worker Deployment name for a model; pass (dict "root" $ "model" "digits"). */}}
{{- define "jetinfer.workerName" -}}
{{- printf "%s-worker-%s" (include "jetinfer.fullname" .root) .model | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jetinfer.schedulerName" -}}
{{- printf "%s-scheduler" (include "jetinfer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jetinfer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jetinfer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jetinfer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Environment shared by every jetinfer container. */}}
{{- define "jetinfer.natsEnv" -}}
- name: JETINFER_NATS_URL
  value: {{ .Values.nats.url | quote }}
- name: JETINFER_SUBJECT_PREFIX
  value: {{ .Values.nats.prefix | quote }}
- name: JETINFER_REQUEST_STREAM
  value: {{ .Values.nats.requestStream | quote }}
{{- if .Values.nats.credsSecret.name }}
- name: JETINFER_NATS_CREDS
  value: /etc/jetinfer/nats/{{ .Values.nats.credsSecret.key }}
{{- end }}
{{- end }}

{{/* Volume and mount for the NATS credentials Secret. */}}
{{- define "jetinfer.credsVolume" -}}
{{- if .Values.nats.credsSecret.name }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.credsSecret.name }}
    defaultMode: 0400
    items:
      - key: {{ .Values.nats.credsSecret.key }}
        path: {{ .Values.nats.credsSecret.key }}
{{- end }}
{{- end }}
{{- define "jetinfer.credsMount" -}}
{{- if .Values.nats.credsSecret.name }}
- name: nats-creds
  mountPath: /etc/jetinfer/nats
  readOnly: true
{{- end }}
{{- end }}

{{/* JETINFER_SCHEDULER_MODEL_LIMITS: "a=0:4,b=1:8". */}}
{{- define "jetinfer.modelLimits" -}}
{{- $out := list }}
{{- range .Values.models }}
{{- $out = append $out (printf "%s=%d:%d" .name (int .minReplicas) (int .maxReplicas)) }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/* Fails rendering on a model name that is not a NATS subject token and DNS label. */}}
{{- define "jetinfer.validateModels" -}}
{{- if not .Values.models }}
{{- fail "models: list at least one model" }}
{{- end }}
{{- range .Values.models }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$" (toString .name)) }}
{{- fail (printf "models: name %q must be a lowercase DNS label of at most 32 characters (it names a consumer and a Deployment)" (toString .name)) }}
{{- end }}
{{- if lt (int .maxReplicas) (max 1 (int .minReplicas) | int) }}
{{- fail (printf "models: %s: maxReplicas must be ≥ 1 and ≥ minReplicas" .name) }}
{{- end }}
{{- if not (has (default $.Values.worker.modelSource .modelSource) (list "file" "repository")) }}
{{- fail (printf "models: %s: modelSource %q must be file or repository" .name (default $.Values.worker.modelSource .modelSource)) }}
{{- end }}
{{- with .modelAlias }}
{{- if not (regexMatch "^[a-z][a-z0-9_-]{0,63}$" (toString .)) }}
{{- fail (printf "models: modelAlias %q must be a lower-case alias name (a-z 0-9 _ -, starting with a letter)" (toString .)) }}
{{- end }}
{{- end }}
{{- if and .modelAlias (ne (default $.Values.worker.modelSource .modelSource) "repository") }}
{{- fail (printf "models: %s: modelAlias needs modelSource repository" .name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* JETINFER_SCHEDULER_MODELS: "a,b". */}}
{{- define "jetinfer.modelNames" -}}
{{- $out := list }}
{{- range .Values.models }}
{{- $out = append $out (toString .name) }}
{{- end }}
{{- join "," $out }}
{{- end }}
