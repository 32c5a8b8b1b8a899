{{/* Names and labels. */}}
{{- define "kine-py.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kine-py.fullname" -}}
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

{{- define "kine-py.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kine-py.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kine-py.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kine-py.labels" -}}
helm.sh/chart: {{ include "kine-py.chart" . }}
{{ include "kine-py.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: datastore
kine-py/mode: {{ .Values.mode }}
{{- end }}

{{- define "kine-py.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kine-py.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The headless Service that gives StatefulSet pods stable names (sqlite and raft). */}}
{{- define "kine-py.headlessName" -}}
{{- printf "%s-headless" (include "kine-py.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kine-py.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the external database's DSN. */}}
{{- define "kine-py.dsnSecretName" -}}
{{- if .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecret }}
{{- else }}
{{- printf "%s-dsn" (include "kine-py.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kine-py.dsnSecretKey" -}}
{{- if .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecretKey }}
{{- else -}}
dsn
{{- end }}
{{- end }}

{{/* Checks that the schema cannot express as clearly. */}}
{{- define "kine-py.validate" -}}
{{- if and (eq .Values.mode "external") (not .Values.externalDatabase.existingSecret) (not .Values.externalDatabase.dsn) }}
{{- fail "mode external needs externalDatabase.dsn or externalDatabase.existingSecret" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a Secret with tls.crt, tls.key and ca.crt)" }}
{{- end }}
{{- if and (eq .Values.mode "external") .Values.externalDatabase.tls.enabled (not .Values.externalDatabase.tls.secretName) }}
{{- fail "externalDatabase.tls.enabled needs externalDatabase.tls.secretName" }}
{{- end }}
{{- end }}

{{/* kine-py's command-line flags for the selected mode. */}}
{{- define "kine-py.args" -}}
- --listen-address=0.0.0.0:2379
- --metrics-bind-address=0.0.0.0:{{ int .Values.metrics.port }}
- --name=$(POD_NAME)
{{- if eq .Values.mode "sqlite" }}
- --endpoint=sqlite:///var/lib/kine-py/state.db
{{- else if eq .Values.mode "raft" }}
- --endpoint=raft+sqlite:///var/lib/kine-py/state.db
{{- end }}
- --log-format={{ .Values.server.logFormat }}
{{- if .Values.server.debug }}
- --debug
{{- end }}
{{- with .Values.server.emulatedEtcdVersion }}
- --emulated-etcd-version={{ . }}
{{- end }}
{{- with .Values.server.maxTxnOps }}
- --max-txn-ops={{ int64 . }}
{{- end }}
{{- with .Values.server.maxRequestBytes }}
- --max-request-bytes={{ int64 . }}
{{- end }}
{{- with .Values.server.watchProgressNotifyInterval }}
- --watch-progress-notify-interval={{ . }}
{{- end }}
{{- if .Values.tls.enabled }}
- --server-cert-file=/etc/kine-py/tls/tls.crt
- --server-key-file=/etc/kine-py/tls/tls.key
{{- if .Values.tls.clientAuth }}
- --trusted-ca-file=/etc/kine-py/tls/ca.crt
{{- end }}
{{- end }}
{{- if eq .Values.mode "external" }}
- --datastore-max-open-connections={{ int .Values.externalDatabase.maxOpenConnections }}
- --poll-interval={{ .Values.externalDatabase.pollInterval }}
{{- if .Values.externalDatabase.tls.enabled }}
- --ca-file=/etc/kine-py/db-tls/ca.crt
{{- if .Values.externalDatabase.tls.clientCertificate }}
- --cert-file=/etc/kine-py/db-tls/tls.crt
- --key-file=/etc/kine-py/db-tls/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The pod template shared by the StatefulSet (sqlite, raft) and the Deployment (external). */}}
{{- define "kine-py.podTemplate" -}}
metadata:
  labels:
    {{- include "kine-py.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := deepCopy .Values.podAnnotations }}
  {{- if and (eq .Values.mode "external") (not .Values.externalDatabase.existingSecret) }}
  {{- $_ := set $annotations "checksum/dsn" (.Values.externalDatabase.dsn | sha256sum) }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "kine-py.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: kine-py
      image: {{ include "kine-py.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "kine-py.args" . | nindent 8 }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if eq .Values.mode "external" }}
        - name: KINE_ENDPOINT
          valueFrom:
            secretKeyRef:
              name: {{ include "kine-py.dsnSecretName" . }}
              key: {{ include "kine-py.dsnSecretKey" . }}
        {{- else if eq .Values.mode "raft" }}
        # PLANNED: provisional names, read by the server once raft mode exists.
        - name: KINE_RAFT_LISTEN_ADDRESS
          value: "0.0.0.0:{{ int .Values.raft.peerPort }}"
        - name: KINE_RAFT_ADVERTISE_ADDRESS
          value: "$(POD_NAME).{{ include "kine-py.headlessName" . }}.{{ .Release.Namespace }}.svc:{{ int .Values.raft.peerPort }}"
        - name: KINE_RAFT_PEERS
          value: {{ include "kine-py.raftPeers" . | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: client
          containerPort: 2379
          protocol: TCP
        - name: metrics
          containerPort: {{ int .Values.metrics.port }}
          protocol: TCP
        {{- if eq .Values.mode "raft" }}
        - name: peer
          containerPort: {{ int .Values.raft.peerPort }}
          protocol: TCP
        {{- end }}
      {{- with .Values.startupProbe }}
      startupProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if ne .Values.mode "external" }}
        - name: data
          mountPath: /var/lib/kine-py
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/kine-py/tls
          readOnly: true
        {{- end }}
        {{- if and (eq .Values.mode "external") .Values.externalDatabase.tls.enabled }}
        - name: db-tls
          mountPath: /etc/kine-py/db-tls
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 64Mi
    {{- if ne .Values.mode "external" }}
    {{- if not .Values.persistence.enabled }}
    - name: data
      emptyDir: {}
    {{- else if and (eq .Values.mode "sqlite") .Values.persistence.existingClaim }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim }}
    {{- end }}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.secretName }}
        defaultMode: 0440
    {{- end }}
    {{- if and (eq .Values.mode "external") .Values.externalDatabase.tls.enabled }}
    - name: db-tls
      secret:
        secretName: {{ .Values.externalDatabase.tls.secretName }}
        defaultMode: 0440
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* PLANNED (raft mode): every member's peer URL, name=host:port, comma-separated. */}}
{{- define "kine-py.raftPeers" -}}
{{- $fullname := include "kine-py.fullname" . }}
{{- $headless := include "kine-py.headlessName" . }}
{{- $peers := list }}
{{- range $i := until (int .Values.raft.replicas) }}
{{- $peers = append $peers (printf "%s-%d=%s-%d.%s.%s.svc:%d" $fullname $i $fullname $i $headless $.Release.Namespace (int $.Values.raft.peerPort)) }}
{{- end }}
{{- join "," $peers }}
{{- end }}
