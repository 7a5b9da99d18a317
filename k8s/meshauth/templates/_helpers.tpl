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

{{/* What the filters reach: the sync channel and the module. */}}
{{- define "meshauth.syncUrl" -}}
{{- printf "http://%s:%v" (include "meshauth.host" .) .Values.service.syncPort -}}
{{- end -}}

{{- define "meshauth.syncSecretName" -}}
{{- default (printf "%s-sync" (include "meshauth.fullname" .)) .Values.syncCredential.existingSecret -}}
{{- end -}}

{{/* The filters sync when a distribution key is pinned and a filter is rendered. */}}
{{- define "meshauth.syncOn" -}}
{{- if and .Values.filter.distributionKey (ne .Values.filter.mode "none") -}}true{{- end -}}
{{- end -}}

{{/* The labels of the control-plane pod. */}}
{{- define "meshauth.podLabels" -}}
{{ include "meshauth.labels" . }}
{{ include "meshauth.selectorLabels" . }}
sidecar.istio.io/inject: "false"
{{- end -}}

{{/* "true" when a label selector names nothing: it selects everything, or everything
but a few. A selector names something only through a matchLabels pair or an `In`
expression with values; `Exists`, `NotIn` and `DoesNotExist` alone match whatever
carries (or lacks) a common key, e.g. every namespace has kubernetes.io/metadata.name. */}}
{{- define "meshauth.selectsAll" -}}
{{- $names := false -}}
{{- if get . "matchLabels" -}}{{- $names = true -}}{{- end -}}
{{- range (get . "matchExpressions" | default list) -}}
{{- if and (eq (toString (get . "operator")) "In") (get . "values") -}}{{- $names = true -}}{{- end -}}
{{- end -}}
{{- if not $names -}}true{{- end -}}
{{- end -}}

{{/* The shortest ipBlock prefixes the sensitive ports accept: /8 for IPv4, /32 for
IPv6 (a whole RIR allocation). Anything broader is all but everyone. */}}
{{- define "meshauth.minPrefix4" -}}8{{- end -}}
{{- define "meshauth.minPrefix6" -}}32{{- end -}}

{{/* The first two 16-bit groups of an IPv6 address, leading zeros dropped ("0:0" for
"::ffff:0:0"): enough to tell the ranges that embed IPv4 addresses. */}}
{{- define "meshauth.ipv6Top" -}}
{{- $halves := splitList "::" (lower .) -}}
{{- $left := list -}}
{{- if index $halves 0 -}}{{- $left = splitList ":" (index $halves 0) -}}{{- end -}}
{{- $groups := list -}}
{{- range $left -}}{{- $groups = append $groups (regexReplaceAll "^0+(.)" . "${1}") -}}{{- end -}}
{{- /* "::" (or fewer than two groups before it) stands for zero groups. */ -}}
{{- if and (lt (len $groups) 2) (gt (len $halves) 1) -}}{{- $groups = concat $groups (list "0" "0") -}}{{- end -}}
{{- printf "%s:%s" (index $groups 0) (index $groups 1) -}}
{{- end -}}

{{/* Fails unless `cidr` is an address range of at least the minimum prefix. IPv6 ranges
in ::/32 (IPv4-mapped and -compatible addresses) and 64:ff9b::/32 (NAT64) embed IPv4
addresses in their last 32 bits: they must be /104 or longer (IPv4 /8). */}}
{{- define "meshauth.narrowCidr" -}}
{{- $what := index . 0 -}}
{{- $cidr := toString (index . 1) -}}
{{- $parts := splitList "/" $cidr -}}
{{- if or (ne (len $parts) 2) (not (regexMatch "^[0-9]{1,3}$" (index $parts 1))) (not (regexMatch "^[0-9A-Fa-f:.]+$" (index $parts 0))) -}}
{{- fail (printf "%s: ipBlock cidr %q is not an address range (ADDRESS/PREFIX)" $what $cidr) -}}
{{- end -}}
{{- $addr := index $parts 0 -}}
{{- $prefix := atoi (index $parts 1) -}}
{{- if contains ":" $addr -}}
{{- if lt $prefix (atoi (include "meshauth.minPrefix6" .)) -}}
{{- fail (printf "%s: ipBlock %s admits too many addresses: IPv6 ranges must be /%s or longer" $what $cidr (include "meshauth.minPrefix6" .)) -}}
{{- else if and (lt $prefix 104) (has (include "meshauth.ipv6Top" $addr) (list "0:0" "64:ff9b")) -}}
{{- fail (printf "%s: ipBlock %s is IPv4 written as IPv6 (IPv4-mapped or NAT64) and admits too many addresses: use an IPv4 range of /%s or longer" $what $cidr (include "meshauth.minPrefix4" .)) -}}
{{- end -}}
{{- else if lt $prefix (atoi (include "meshauth.minPrefix4" .)) -}}
{{- fail (printf "%s: ipBlock %s admits too many addresses: IPv4 ranges must be /%s or longer" $what $cidr (include "meshauth.minPrefix4" .)) -}}
{{- end -}}
{{- end -}}

{{/* The size of a range narrowCidr accepted, counted against its family's budget:
"4 N" for N IPv4 addresses (IPv4 written as IPv6 included), "6 N" for N IPv6 /64s (a
longer prefix counts as one). */}}
{{- define "meshauth.cidrSize" -}}
{{- $parts := splitList "/" (toString .) -}}
{{- $addr := index $parts 0 -}}
{{- $family := "4" -}}
{{- $bits := 32 -}}
{{- if contains ":" $addr -}}
{{- if has (include "meshauth.ipv6Top" $addr) (list "0:0" "64:ff9b") -}}{{- $bits = 128 -}}
{{- else -}}{{- $family = "6" -}}{{- $bits = 64 -}}{{- end -}}
{{- end -}}
{{- $n := 1 -}}
{{- range until (int (max 0 (sub $bits (atoi (index $parts 1))))) -}}{{- $n = mul $n 2 -}}{{- end -}}
{{- printf "%s %d" $family $n -}}
{{- end -}}

{{/* Fails when a NetworkPolicy peer list for a sensitive port would admit too much: a
peer without selectors (every pod), a selector that names nothing (see selectsAll), a
namespaceSelector that names no namespace (whoever can label a pod anywhere gets in), an
address range broader than the minimum prefix (see narrowCidr), or ranges that together
hold more than one minimum-prefix range (256 IPv4 /8s each pass, and admit everyone). */}}
{{- define "meshauth.closedPeers" -}}
{{- $what := index . 0 -}}
{{- $total := dict "4" 0 "6" 0 -}}
{{- range $i, $p := index . 1 -}}
{{- $at := printf "%s[%d]" $what $i -}}
{{- $ip := get $p "ipBlock" -}}
{{- if hasKey $p "ipBlock" -}}
{{- if or (hasKey $p "namespaceSelector") (hasKey $p "podSelector") -}}
{{- fail (printf "%s: an ipBlock with a selector in one peer is invalid (Kubernetes refuses it): make them two peers" $at) -}}
{{- end -}}
{{- include "meshauth.narrowCidr" (list $at (get ($ip | default dict) "cidr")) -}}
{{- $size := splitList " " (include "meshauth.cidrSize" (get $ip "cidr")) -}}
{{- $_ := set $total (index $size 0) (add (get $total (index $size 0)) (atoi (index $size 1))) -}}
{{- else if and (not (hasKey $p "namespaceSelector")) (or (not (hasKey $p "podSelector")) (include "meshauth.selectsAll" (get $p "podSelector" | default dict))) -}}
{{- fail (printf "%s admits every pod of the namespace: name the pods (matchLabels, or an In expression)" $at) -}}
{{- else if and (hasKey $p "namespaceSelector") (include "meshauth.selectsAll" (get $p "namespaceSelector" | default dict)) -}}
{{- fail (printf "%s: a namespaceSelector that names no namespace admits every namespace: name the namespaces (matchLabels, or an In expression)" $at) -}}
{{- end -}}
{{- end -}}
{{- /* One IPv4 /8 is 2^24 addresses; one IPv6 /32 is 2^32 /64s. */ -}}
{{- if gt (int64 (get $total "4")) 16777216 -}}
{{- fail (printf "%s: its ipBlocks together admit %v IPv4 addresses, more than one /%s: narrow them" $what (get $total "4") (include "meshauth.minPrefix4" .)) -}}
{{- end -}}
{{- if gt (int64 (get $total "6")) 4294967296 -}}
{{- fail (printf "%s: its ipBlocks together admit more IPv6 addresses than one /%s: narrow them" $what (include "meshauth.minPrefix6" .)) -}}
{{- end -}}
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
{{- if and (ne .Values.filter.mode "none") (not (include "meshauth.filterSha256" .)) -}}
{{- if and .Values.filter.releaseSha256 (not (include "meshauth.releaseImage" .)) -}}
{{- fail (printf "filter.mode=%s needs filter.sha256: image.tag %q is not the chart's release %q, so the chart does not know the sha256 of its module (GET /filter/meshauth.wasm.sha256 from that image, or scripts/build-filter.sh from its sources, gives it)" .Values.filter.mode .Values.image.tag .Chart.AppVersion) -}}
{{- end -}}
{{- fail (printf "filter.mode=%s needs filter.sha256 (the sha256 of the filter .wasm; see the chart README): a module reference without one is refused by Envoy or loads an unpinned module" .Values.filter.mode) -}}
{{- end -}}
{{- if eq .Values.filter.mode "istio" -}}
{{- if not .Values.filter.namespaces -}}
{{- fail "filter.mode=istio needs filter.namespaces: the namespaces whose workloads the filter protects (one WasmPlugin in each)" -}}
{{- end -}}
{{- if and (not .Values.filter.selector) (not .Values.filter.targetRefs) -}}
{{- fail "filter.selector is empty: it would select every workload of each namespace, the control plane's token endpoint included; name the workloads (e.g. filter.selector.app=api) or use filter.targetRefs" -}}
{{- end -}}
{{- $cp := include "meshauth.podLabels" . | fromYaml -}}
{{- $matches := true -}}
{{- range $k, $v := .Values.filter.selector -}}
{{- if ne (toString (get $cp $k)) (toString $v) -}}{{- $matches = false -}}{{- end -}}
{{- end -}}
{{- if and .Values.filter.selector $matches -}}
{{- fail "filter.selector matches the control plane's own labels: the filter would guard the token and sync endpoints it needs and lock the control plane out" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.filter.mode "istio") (not .Values.filter.distributionKey) (not .Values.filter.bootstrapOnly) -}}
{{- fail "filter.distributionKey is empty: the WasmPlugin's filters would have no live sync (no revocations, no new signing keys) and refuse every token not signed by a key in pluginConfig.bootstrap_jwks. Use the values `meshauth init --kubernetes` writes (filter.distributionKey with its private half in the Secret), or set filter.bootstrapOnly=true if bootstrap-only is intended" -}}
{{- end -}}
{{- if and .Values.filter.bootstrapOnly .Values.filter.distributionKey -}}
{{- fail "filter.bootstrapOnly=true and filter.distributionKey contradict each other: unset one" -}}
{{- end -}}
{{- if and .Values.secrets.distributionKey (not .Values.secrets.existingSecret) -}}
{{- fail "secrets.distributionKey=true needs secrets.existingSecret: the Secret holding distribution-key (meshauth init --kubernetes writes it)" -}}
{{- end -}}
{{- if include "meshauth.syncOn" . -}}
{{- if and (not .Values.syncCredential.value) (not .Values.syncCredential.existingSecret) -}}
{{- fail "the filters sync (filter.distributionKey is set) but the control plane has no sync credential: set syncCredential.value, or syncCredential.existingSecret" -}}
{{- end -}}
{{- if and (not .Values.syncCredential.value) (not .Values.syncCredential.fromProxyEnv) -}}
{{- fail "the filters sync but get no credential: set syncCredential.value, or syncCredential.fromProxyEnv=true and MESHAUTH_SYNC_CREDENTIAL in the proxies' environment" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.syncCredential.value (lt (len .Values.syncCredential.value) 32) -}}
{{- fail "syncCredential.value: use 32 or more random characters (openssl rand -hex 32)" -}}
{{- end -}}
{{- $ports := list (int .Values.service.port) (int .Values.service.syncPort) (int .Values.service.adminPort) (int .Values.service.metricsPort) -}}
{{- if ne (len (uniq $ports)) 4 -}}
{{- fail "service.port, syncPort, adminPort and metricsPort must differ: each audience has its own port (and its own NetworkPolicy rule)" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- include "meshauth.closedPeers" (list "networkPolicy.sync.extraFrom" .Values.networkPolicy.sync.extraFrom) -}}
{{- include "meshauth.closedPeers" (list "networkPolicy.admin.from" .Values.networkPolicy.admin.from) -}}
{{- end -}}
{{- end -}}

{{- define "meshauth.pluginConfig" -}}
{{- $cfg := deepCopy .Values.filter.pluginConfig -}}
{{- if not (hasKey $cfg "issuer") -}}{{- $_ := set $cfg "issuer" (include "meshauth.issuer" .) -}}{{- end -}}
{{- if and .Values.filter.distributionKey (not (hasKey $cfg "sync")) -}}
{{- $cluster := ternary (printf "outbound|%v||%s" .Values.service.syncPort (include "meshauth.host" .)) "meshauth_control_plane" (eq .Values.filter.mode "istio") -}}
{{- /* The credential reaches the VM as an environment variable (vmConfig.env / vm_config.environment_variables), never as text in this configuration. */}}
{{- $_ := set $cfg "sync" (dict "cluster" $cluster "authority" (include "meshauth.host" .) "distribution_key" .Values.filter.distributionKey "credential_env" "MESHAUTH_SYNC_CREDENTIAL") -}}
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

{{/* Non-empty when the image is the one this chart was released with (no tag, or the
chart's appVersion), whose module's sha256 the release recorded in filter.releaseSha256. */}}
{{- define "meshauth.releaseImage" -}}
{{- if or (not .Values.image.tag) (eq (toString .Values.image.tag) .Chart.AppVersion) -}}yes{{- end -}}
{{- end -}}

{{/* The sha256 that pins the filter module: filter.sha256, else the release's own for
the release's image; empty when neither applies. */}}
{{- define "meshauth.filterSha256" -}}
{{- if .Values.filter.sha256 -}}
{{- .Values.filter.sha256 -}}
{{- else if include "meshauth.releaseImage" . -}}
{{- .Values.filter.releaseSha256 -}}
{{- end -}}
{{- end -}}
