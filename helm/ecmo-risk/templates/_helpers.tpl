{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "ecmo-risk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains the chart. */}}
{{- define "ecmo-risk.fullname" -}}
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

{{- define "ecmo-risk.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecmo-risk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecmo-risk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecmo-risk.labels" -}}
helm.sh/chart: {{ include "ecmo-risk.chart" . }}
{{ include "ecmo-risk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ecmo-risk-service
{{- end }}

{{- define "ecmo-risk.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecmo-risk.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ecmo-risk.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
terminationGracePeriodSeconds: Kubernetes starts the countdown before preStop, so the pod needs
the preStop sleep plus gunicorn's graceful drain plus a margin, or SIGKILL truncates the drain.
*/}}
{{- define "ecmo-risk.terminationGracePeriodSeconds" -}}
{{- $preStop := int .Values.lifecycle.preStopSleepSeconds }}
{{- $graceful := int .Values.gunicorn.gracefulTimeout }}
{{- $margin := int .Values.lifecycle.terminationMarginSeconds }}
{{- if lt $margin 1 }}
{{- fail "lifecycle.terminationMarginSeconds must be at least 1 so the grace period exceeds preStop + gunicorn.gracefulTimeout" }}
{{- end }}
{{- add $preStop $graceful $margin }}
{{- end }}

{{/* Where the service reads models: the mounted volume when enabled, else the image default. */}}
{{- define "ecmo-risk.modelDir" -}}
{{- $v := .Values.models.volume }}
{{- if $v.subPath }}
{{- printf "%s/%s" (trimSuffix "/" $v.mountPath) (trimPrefix "/" $v.subPath) }}
{{- else }}
{{- $v.mountPath }}
{{- end }}
{{- end }}

{{/* ECMO_DEFAULT_VERSIONS: the name=version pairs, sorted so the rendering is stable. */}}
{{- define "ecmo-risk.defaultVersions" -}}
{{- $pairs := list }}
{{- range $name := keys .Values.config.defaultVersions | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $name (toString (index $.Values.config.defaultVersions $name))) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
