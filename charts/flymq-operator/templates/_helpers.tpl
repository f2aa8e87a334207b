{{/* Full name of the release's objects. */}}
{{- define "flymq-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels. */}}
{{- define "flymq-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Standard labels. */}}
{{- define "flymq-operator.labels" -}}
{{ include "flymq-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flymq
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* ServiceAccount name. */}}
{{- define "flymq-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flymq-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Rules the operator needs in every namespace it watches. */}}
{{- define "flymq-operator.namespacedRules" -}}
- apiGroups: ["flymq.io"]
  resources: ["flymqclusters", "topics", "users", "acls"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["flymq.io"]
  resources: ["flymqclusters/status", "topics/status", "users/status", "acls/status"]
  verbs: ["get", "patch"]
# The flymq.io/finalizer on Topics, Users and ACLs is added and removed with patches.
- apiGroups: ["flymq.io"]
  resources: ["topics", "users", "acls"]
  verbs: ["patch"]
# Owner references that block the owner's deletion need this where the
# OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: ["flymq.io"]
  resources: ["flymqclusters/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "services", "secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Rolls: the StatefulSet is OnDelete and the operator restarts one broker
# pod at a time once the others have caught up.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# The NetworkPolicy that keeps each cluster's Raft and admin ports private
# (deleted when a FlyMQCluster switches spec.networkPolicy.enabled off).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
{{- if .Values.rbac.serviceMonitors }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "create", "patch", "delete"]
{{- end }}
{{- if .Values.rbac.certManager }}
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "list", "create", "patch", "delete"]
{{- end }}
{{- end -}}
