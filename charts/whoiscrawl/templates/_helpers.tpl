{{/* Names and labels shared by every template. */}}
{{- define "whoiscrawl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "whoiscrawl.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "whoiscrawl.labels" -}}
{{ include "whoiscrawl.selectorLabels" . }}
app.kubernetes.io/part-of: whoiscrawl
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "whoiscrawl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "whoiscrawl.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespaces watched in namespaced mode: the listed ones, or the release's own. */}}
{{- define "whoiscrawl.watchedNamespaces" -}}
{{- toJson (.Values.watch.namespaces | default (list .Release.Namespace)) -}}
{{- end -}}

{{- define "whoiscrawl.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The map's server (serve.yaml): its own component, so the operator's selector never picks it. */}}
{{- define "whoiscrawl.serveSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: serve
{{- end -}}

{{- define "whoiscrawl.serveLabels" -}}
{{ include "whoiscrawl.serveSelectorLabels" . }}
app.kubernetes.io/part-of: whoiscrawl
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* A list of strings as CEL string literals, comma-separated (single quotes escaped). */}}
{{- define "whoiscrawl.celStrings" -}}
{{- $out := list -}}
{{- range . -}}
{{- $out = append $out (printf "'%s'" (replace "'" "\\'" .)) -}}
{{- end -}}
{{- join ", " $out -}}
{{- end -}}
