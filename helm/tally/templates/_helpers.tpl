{{/*
Shared pieces of the Tally chart: names, labels, the pod and container
security settings, probes, volumes and the TALLY_… environment (plain values
and secretKeyRefs) used by every component's template.
*/}}

{{/* Chart name, overridable. */}}
{{- define "tally.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every resource name: the release name, plus the chart name unless it is in it. */}}
{{- define "tally.fullname" -}}
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

{{/* helm.sh/chart label value. */}}
{{- define "tally.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component. Call with (dict "root" $ "component" "ingest-gateway"). */}}
{{- define "tally.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tally.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels of a component's resources. Same argument as tally.selectorLabels. */}}
{{- define "tally.labels" -}}
helm.sh/chart: {{ include "tally.chart" .root }}
{{ include "tally.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: tally
{{- end -}}

{{/* Name of the Secret holding the credentials. */}}
{{- define "tally.secretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else -}}
{{- printf "%s-credentials" (include "tally.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* A variable read from the credentials Secret. Call with (list $ "TALLY_VAR" "secret-key"). */}}
{{- define "tally.secretEnv" -}}
{{- $root := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "tally.secretName" $root }}
      key: {{ index . 2 }}
{{- end -}}

{{/* Logging: every service. */}}
{{- define "tally.env.log" -}}
- {name: TALLY_LOG, value: {{ .Values.logLevel | quote }}}
- {name: TALLY_LOG_FORMAT, value: json}
{{- end -}}

{{/* Kafka: brokers and topics. */}}
{{- define "tally.env.kafka" -}}
- {name: TALLY_KAFKA_BROKERS, value: {{ .Values.kafka.brokers | quote }}}
- {name: TALLY_KAFKA_TOPIC, value: {{ .Values.kafka.topic | quote }}}
- {name: TALLY_KAFKA_DLQ_TOPIC, value: {{ .Values.kafka.dlqTopic | quote }}}
{{- end -}}

{{/* A cluster's shards as TALLY_CLICKHOUSE_SHARDS reads them: url,url;url,url. */}}
{{- define "tally.shards" -}}
{{- $shards := list -}}
{{- range . }}{{ $shards = append $shards (join "," .) }}{{ end -}}
{{- join ";" $shards -}}
{{- end -}}

{{/* ClickHouse: endpoint and database plain, user and password from the Secret;
     on a cluster its name and every shard's replicas. */}}
{{- define "tally.env.clickhouse" -}}
- {name: TALLY_CLICKHOUSE_URL, value: {{ .Values.clickhouse.url | quote }}}
- {name: TALLY_CLICKHOUSE_DATABASE, value: {{ .Values.clickhouse.database | quote }}}
{{- with .Values.clickhouse.cluster }}
{{- if .name }}
- {name: TALLY_CLICKHOUSE_CLUSTER, value: {{ .name | quote }}}
- name: TALLY_CLICKHOUSE_SHARDS
  value: {{ include "tally.shards" .shards | quote }}
{{- end }}
{{- end }}
{{ include "tally.secretEnv" (list . "TALLY_CLICKHOUSE_USER" "clickhouse-user") }}
{{ include "tally.secretEnv" (list . "TALLY_CLICKHOUSE_PASSWORD" "clickhouse-password") }}
{{- end -}}

{{/* Redis: URL (may carry a password) from the Secret, key prefix plain. */}}
{{- define "tally.env.redis" -}}
{{ include "tally.secretEnv" (list . "TALLY_REDIS_URL" "redis-url") }}
- {name: TALLY_REDIS_PREFIX, value: {{ .Values.redis.prefix | quote }}}
{{- end -}}

{{/* PostgreSQL: URL from the Secret. */}}
{{- define "tally.env.postgres" -}}
{{ include "tally.secretEnv" (list . "TALLY_POSTGRES_URL" "postgres-url") }}
{{- end -}}

{{/* Pod-level settings shared by every pod. */}}
{{- define "tally.podSpec" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
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
{{- end -}}

{{/* Spread a component's pods over nodes. Same argument as tally.selectorLabels. */}}
{{- define "tally.spread" -}}
{{- if .root.Values.spreadOverNodes }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tally.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* Image, pull policy and container security context. */}}
{{- define "tally.container" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* Liveness and readiness probes on the container's `http` port. */}}
{{- define "tally.probes" -}}
livenessProbe:
  httpGet: {path: /livez, port: http}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* The writable /tmp (the root filesystem is read-only). */}}
{{- define "tally.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}
{{- define "tally.tmpMount" -}}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{/* Pod annotations: Prometheus scraping, a checksum of the chart's Secret (pods
restart when it changes) and the component's own. Call with
(dict "root" $ "port" 8080 "extra" .Values.gateway.podAnnotations). */}}
{{- define "tally.podAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- if not .root.Values.existingSecret }}
checksum/credentials: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget. Call with (dict "root" $ "component" "…" "pdb" .Values.x.podDisruptionBudget). */}}
{{- define "tally.pdb" -}}
{{- if .pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "tally.fullname" .root }}-{{ .component }}
  labels:
    {{- include "tally.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "tally.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* A ClusterIP Service on the component's HTTP port. Call with (dict "root" $ "component" "…" "port" 8080). */}}
{{- define "tally.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "tally.fullname" .root }}-{{ .component }}
  labels:
    {{- include "tally.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "tally.selectorLabels" . | nindent 4 }}
  ports:
    - {name: http, port: {{ .port }}, targetPort: http, protocol: TCP}
{{- end -}}

{{/* A CPU HorizontalPodAutoscaler. Call with (dict "root" $ "component" "…" "hpa" .Values.x.autoscaling). */}}
{{- define "tally.hpa" -}}
{{- if .hpa.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "tally.fullname" .root }}-{{ .component }}
  labels:
    {{- include "tally.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "tally.fullname" .root }}-{{ .component }}
  minReplicas: {{ .hpa.minReplicas }}
  maxReplicas: {{ .hpa.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .hpa.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}
