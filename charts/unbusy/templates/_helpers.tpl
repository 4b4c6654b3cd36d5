{{/* Full name of the release's objects, at most 63 characters. */}}
{{- define "unbusy.fullname" -}}
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

{{/* Name of cluster-scoped objects: the namespace keeps two releases of the same name apart. */}}
{{- define "unbusy.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "unbusy.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "unbusy.serviceAccountName" -}}
{{- default (include "unbusy.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "unbusy.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "unbusy.labels" -}}
{{ include "unbusy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: unbusy
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
RBAC rules the operator needs in every namespace it watches (see operator/unbusy/kube and
operator/unbusy/controller). No wildcards, no Secrets.
*/}}
{{- define "unbusy.namespacedRules" -}}
# The InferenceServices: kopf lists, watches and patches them (its annotations); the operator
# reads one before refreshing its status.
- apiGroups: [serving.unbusy.dev]
  resources: [inferenceservices]
  verbs: [get, list, watch, patch]
- apiGroups: [serving.unbusy.dev]
  resources: [inferenceservices/status]
  verbs: [patch]
# Children: server-side apply (patch; create when new), one list per kind, pruning (delete).
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [list, create, patch, delete]
# Deployments also feed the status (kopf watches them).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
# The scaling loop sets replicas through the scale subresource.
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, create, patch, delete]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [list, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [list, create, patch, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [list, create, patch, delete]
- apiGroups: [inference.networking.k8s.io]
  resources: [inferencepools]
  verbs: [list, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors, podmonitors, prometheusrules]
  verbs: [list, create, patch, delete]
# Pending replicas: why the scheduler could not place them.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Events on the InferenceServices (kubectl describe).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/*
Cluster-wide in every mode: kopf watches CRDs to find the resources it serves; the operator
watches Nodes, so that a status says at once when replicas sit on a node that is gone or not Ready.
*/}}
{{- define "unbusy.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- end -}}

{{/* The operator's command-line flags. */}}
{{- define "unbusy.args" -}}
- --peering={{ required "peering.name is required" .Values.peering.name }}
- --peering-lifetime={{ .Values.peering.lifetimeSeconds }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
- --metrics-port={{ .Values.metrics.port }}
- --health-port={{ .Values.health.port }}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
{{- end -}}
