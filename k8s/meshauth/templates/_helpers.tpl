{{- define "meshauth.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meshauth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshauth.labels" -}}
app.kubernetes.io/name: {{ include "meshauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshauth
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "meshauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{- define "meshauth.secretName" -}}
{{- default (printf "%s-secrets" (include "meshauth.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "meshauth.host" -}}
{{- printf "%s.%s.svc.cluster.local" (include "meshauth.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "meshauth.url" -}}
{{- printf "http://%s:%v" (include "meshauth.host" .) .Values.service.port -}}
{{- end -}}

{{- define "meshauth.issuer" -}}
{{- default (include "meshauth.url" .) .Values.issuer -}}
{{- end -}}

{{/* The rules the schema cannot express, failed with a clear message. */}}
{{- define "meshauth.validate" -}}
{{- if and (eq .Values.store.kind "embedded") (gt (int .Values.replicas) 1) -}}
{{- fail "store.kind=embedded keeps its data in one file on one volume: set replicas=1, or use store.kind=redis for more replicas" -}}
{{- end -}}
{{- if and (eq .Values.store.kind "embedded") .Values.autoscaling.enabled -}}
{{- fail "autoscaling needs store.kind=redis (the embedded store allows one replica)" -}}
{{- end -}}
{{- if and (eq .Values.store.kind "redis") (not .Values.store.redis.url) (not .Values.store.redis.sentinels) -}}
{{- fail "store.kind=redis needs store.redis.url or store.redis.sentinels" -}}
{{- end -}}
{{- if and .Values.store.redis.url .Values.store.redis.sentinels -}}
{{- fail "set store.redis.url or store.redis.sentinels, not both" -}}
{{- end -}}
{{- if and (eq .Values.filter.mode "istio") (not .Values.filter.sha256) -}}
{{- fail "filter.mode=istio needs filter.sha256 (the sha256 of the filter .wasm; see the chart README)" -}}
{{- end -}}
{{- end -}}

{{- define "meshauth.pluginConfig" -}}
{{- $cfg := deepCopy .Values.filter.pluginConfig -}}
{{- if not (hasKey $cfg "issuer") -}}{{- $_ := set $cfg "issuer" (include "meshauth.issuer" .) -}}{{- end -}}
{{- if and .Values.filter.distributionKey (not (hasKey $cfg "sync")) -}}
{{- $cluster := ternary (printf "outbound|%v||%s" .Values.service.port (include "meshauth.host" .)) "meshauth_control_plane" (eq .Values.filter.mode "istio") -}}
{{- $_ := set $cfg "sync" (dict "cluster" $cluster "authority" (include "meshauth.host" .) "distribution_key" .Values.filter.distributionKey) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* A duration like 24h, 30m, 90s or 14d in seconds. */}}
{{- define "meshauth.seconds" -}}
{{- $d := toString . -}}
{{- $n := regexReplaceAll "[a-z]+$" $d "" | int -}}
{{- $u := regexReplaceAll "^[0-9]+" $d "" -}}
{{- if eq $u "d" -}}{{ mul $n 86400 }}{{- else if eq $u "h" -}}{{ mul $n 3600 }}{{- else if eq $u "m" -}}{{ mul $n 60 }}{{- else -}}{{ $n }}{{- end -}}
{{- end -}}
