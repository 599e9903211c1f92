{{- define "ocisync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ocisync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ocisync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocisync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ocisync.labels" -}}
{{ include "ocisync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ocisync
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ocisync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ocisync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when a credential provider passes service-account tokens
(tokenAttributes): only then may the operator create them. */}}
{{- define "ocisync.providerTokens" -}}
{{- $tokens := false -}}
{{- range ((.Values.credentialProviders.config | default dict).providers | default list) -}}
{{- if .tokenAttributes }}{{ $tokens = true }}{{ end -}}
{{- end -}}
{{- if $tokens }}true{{ end -}}
{{- end -}}
