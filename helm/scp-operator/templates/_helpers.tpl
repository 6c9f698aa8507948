{{/* Chart name, truncated to the 63 characters a label value may hold. */}}
{{- define "scp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every namespaced and cluster-scoped object of the release. */}}
{{- define "scp-operator.fullname" -}}
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

{{- define "scp-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The label telling one shard's Deployment and pods from another's (given the shard index). */}}
{{- define "scp-operator.shardLabel" -}}
virtualserver.scp.dev/shard: {{ . | quote }}
{{- end }}

{{- define "scp-operator.labels" -}}
helm.sh/chart: {{ include "scp-operator.chart" . }}
{{ include "scp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scp-operator
{{- end }}

{{- define "scp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scp-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "scp-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Whether the chart creates the credentials Secret from values. */}}
{{- define "scp-operator.createCredentials" -}}
{{- $c := .Values.credentials }}
{{- if and $c.accessKey $c.secretKey }}true
{{- else if or $c.accessKey $c.secretKey }}
{{- fail "credentials: credentials.accessKey and credentials.secretKey must be set together" }}
{{- end }}
{{- end }}

{{/* The Secret holding the SCP keys: created from values, else the existing one. */}}
{{- define "scp-operator.credentialsSecretName" -}}
{{- if include "scp-operator.createCredentials" . }}
{{- printf "%s-credentials" (include "scp-operator.fullname" .) }}
{{- else }}
{{- required "credentials: set credentials.existingSecret to the name of a Secret with the SCP keys, or set credentials.accessKey and credentials.secretKey" .Values.credentials.existingSecret }}
{{- end }}
{{- end }}

{{/* Watched namespaces, validated (exact names only: Kopf globs would need namespace reads). */}}
{{- define "scp-operator.watchNamespaces" -}}
{{- range .Values.watchNamespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "watchNamespaces: %q is not a namespace name (exact names only, no patterns)" .) }}
{{- end }}
{{- end }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- end }}

{{/* Arguments of `scp-operator run` (the image's ENTRYPOINT is scp-operator): Kopf flags that
     exist only on the command line (health endpoint, logging, namespaces). Every other Kopf
     option is set in the operator's startup hook, whose docstring lists these flags too
     (operator/scp_operator/handlers/startup.py), e.g. no Kopf peering. */}}
{{- define "scp-operator.args" -}}
- run
- --liveness=http://0.0.0.0:{{ .Values.healthPort }}/healthz
- --log-format={{ .Values.operator.logFormat }}
{{- with .Values.operator.logLevel }}
{{- if eq . "quiet" }}
- --quiet
{{- else if eq . "verbose" }}
- --verbose
{{- else if eq . "debug" }}
- --debug
{{- end }}
{{- end }}
{{- range (include "scp-operator.watchNamespaces" . | fromJsonArray) }}
- --namespace={{ . }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The Lease this release's operator takes (SCP_OPERATOR_LEASE_NAME is lease.name; the
     operator derives the same name from its --namespace flags, see scp_operator/lease.py):
     lease.name when serving all namespaces, else lease.name-ns-<first 10 hex of the SHA-256 of
     the sorted namespaces joined by commas>. */}}
{{- define "scp-operator.leaseName" -}}
{{- $namespaces := include "scp-operator.watchNamespaces" . | fromJsonArray }}
{{- if $namespaces }}
{{- printf "%s-ns-%s" .Values.lease.name ($namespaces | sortAlpha | join "," | sha256sum | trunc 10) }}
{{- else }}
{{- .Values.lease.name }}
{{- end }}
{{- end }}

{{/* Every Lease the release's processes take (a JSON list): the one Lease, or one per shard
     (<leaseName>-shard-<i>-of-<n>, as scp_operator.sharding names them). */}}
{{- define "scp-operator.leaseNames" -}}
{{- $base := include "scp-operator.leaseName" . }}
{{- $shards := int .Values.sharding.shards }}
{{- if le $shards 1 }}
{{- list $base | toJson }}
{{- else }}
{{- $names := list }}
{{- range $i := until $shards }}
{{- $names = append $names (printf "%s-shard-%d-of-%d" $base $i $shards) }}
{{- end }}
{{- $names | toJson }}
{{- end }}
{{- end }}

{{/* The ScpAccounts of the accounts value, validated, with the Secret's namespace defaulted to the
     release namespace (a JSON list). */}}
{{- define "scp-operator.accounts" -}}
{{- $accounts := list }}
{{- $names := list }}
{{- range .Values.accounts }}
{{- if has .name $names }}
{{- fail (printf "accounts: the account name %q is used twice" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- $ref := .credentialsSecretRef }}
{{- $secret := dict "namespace" (default $.Release.Namespace $ref.namespace) "name" $ref.name "accessKeyKey" (default "access-key" $ref.accessKeyKey) "secretKeyKey" (default "secret-key" $ref.secretKeyKey) }}
{{- $accounts = append $accounts (merge (dict "credentialsSecretRef" $secret) (omit . "credentialsSecretRef")) }}
{{- end }}
{{- $accounts | toJson }}
{{- end }}

{{/* Every Secret the operator may get: those of the accounts value and of accountSecrets, each
     once, as a JSON list of {namespace, name} sorted by namespace/name. */}}
{{- define "scp-operator.accountSecrets" -}}
{{- $seen := dict }}
{{- range (include "scp-operator.accounts" . | fromJsonArray) }}
{{- $ref := .credentialsSecretRef }}
{{- $_ := set $seen (printf "%s/%s" $ref.namespace $ref.name) (dict "namespace" $ref.namespace "name" $ref.name) }}
{{- end }}
{{- range .Values.accountSecrets }}
{{- $namespace := default $.Release.Namespace .namespace }}
{{- $_ := set $seen (printf "%s/%s" $namespace .name) (dict "namespace" $namespace "name" .name) }}
{{- end }}
{{- $secrets := list }}
{{- range (keys $seen | sortAlpha) }}
{{- $secrets = append $secrets (get $seen .) }}
{{- end }}
{{- $secrets | toJson }}
{{- end }}

{{/* The namespaces the admission policies act in: the watched ones, or all (empty). */}}
{{- define "scp-operator.admissionMatchResources" -}}
{{- $namespaces := include "scp-operator.watchNamespaces" . | fromJsonArray }}
{{- if $namespaces }}
matchResources:
  # Only where this release's operator acts (watchNamespaces): elsewhere another release, or
  # none, serves the objects.
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values: {{ $namespaces | sortAlpha | toJson }}
{{- end }}
{{- end }}
