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
{{- if eq .Values.mode "raft" }}
{{- if and .Values.raft.peerTLS.enabled (not .Values.raft.peerTLS.secretName) }}
{{- fail "raft.peerTLS.enabled needs raft.peerTLS.secretName (a Secret with tls.crt, tls.key and ca.crt)" }}
{{- end }}
{{- if lt (int .Values.raft.replicas) 1 }}
{{- fail "raft.replicas must be at least 1" }}
{{- end }}
{{- if or (le (int .Values.raft.heartbeatInterval) 0) (lt (int .Values.raft.electionTimeout) (mul 5 (int .Values.raft.heartbeatInterval))) }}
{{- fail "raft.electionTimeout must be at least 5 times raft.heartbeatInterval (and raft.heartbeatInterval positive)" }}
{{- end }}
{{- if or (eq (int .Values.raft.peerPort) 2379) (eq (int .Values.raft.peerPort) (int .Values.metrics.port)) }}
{{- fail "raft.peerPort must differ from the client port 2379 and from metrics.port" }}
{{- end }}
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
- --endpoint=raft:///var/lib/kine-py/raft
- --initial-cluster={{ include "kine-py.raftInitialCluster" . }}
- --initial-cluster-state={{ .Values.raft.initialClusterState }}
- --initial-cluster-token={{ include "kine-py.raftToken" . }}
- --listen-peer-urls={{ include "kine-py.raftPeerScheme" . }}://0.0.0.0:{{ int .Values.raft.peerPort }}
- --initial-advertise-peer-urls={{ include "kine-py.raftPeerScheme" . }}://{{ include "kine-py.raftMemberHost" (list . "$(POD_NAME)") }}:{{ int .Values.raft.peerPort }}
- --advertise-client-urls={{ include "kine-py.clientScheme" . }}://{{ include "kine-py.raftMemberHost" (list . "$(POD_NAME)") }}:2379
- --heartbeat-interval={{ int .Values.raft.heartbeatInterval }}
- --election-timeout={{ int .Values.raft.electionTimeout }}
- --snapshot-count={{ int64 .Values.raft.snapshotCount }}
{{- if .Values.raft.peerTLS.enabled }}
- --peer-cert-file=/etc/kine-py/peer-tls/tls.crt
- --peer-key-file=/etc/kine-py/peer-tls/tls.key
- --peer-trusted-ca-file=/etc/kine-py/peer-tls/ca.crt
{{- end }}
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
        {{- if and (eq .Values.mode "raft") .Values.raft.peerTLS.enabled }}
        - name: peer-tls
          mountPath: /etc/kine-py/peer-tls
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
    {{- if and (eq .Values.mode "raft") .Values.raft.peerTLS.enabled }}
    - name: peer-tls
      secret:
        secretName: {{ .Values.raft.peerTLS.secretName }}
        defaultMode: 0440
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if and (eq .Values.mode "raft") (eq .Values.raft.podAntiAffinity "soft") }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "kine-py.selectorLabels" . | nindent 16 }}
  {{- else if and (eq .Values.mode "raft") (eq .Values.raft.podAntiAffinity "hard") }}
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "kine-py.selectorLabels" . | nindent 14 }}
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

{{/* Raft mode. */}}
{{/* http, or https with peer TLS (the certificate flags turn TLS on; the scheme says so). */}}
{{- define "kine-py.raftPeerScheme" -}}
{{- if .Values.raft.peerTLS.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{- define "kine-py.clientScheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{- define "kine-py.raftToken" -}}
{{- default (include "kine-py.fullname" .) .Values.raft.initialClusterToken }}
{{- end }}

{{/* A member's DNS name through the headless Service: (list $ "pod-name"). */}}
{{- define "kine-py.raftMemberHost" -}}
{{- $root := index . 0 }}
{{- printf "%s.%s.%s.svc" (index . 1) (include "kine-py.headlessName" $root) $root.Release.Namespace }}
{{- end }}

{{/* --initial-cluster: NAME=PEER_URL for every member, the pods <fullname>-0 .. -(replicas-1). */}}
{{- define "kine-py.raftInitialCluster" -}}
{{- $fullname := include "kine-py.fullname" . }}
{{- $scheme := include "kine-py.raftPeerScheme" . }}
{{- $members := list }}
{{- range $i := until (int .Values.raft.replicas) }}
{{- $pod := printf "%s-%d" $fullname $i }}
{{- $members = append $members (printf "%s=%s://%s:%d" $pod $scheme (include "kine-py.raftMemberHost" (list $ $pod)) (int $.Values.raft.peerPort)) }}
{{- end }}
{{- join "," $members }}
{{- end }}

{{/* Client endpoints of every member, for etcdctl in NOTES.txt. */}}
{{- define "kine-py.raftClientEndpoints" -}}
{{- $fullname := include "kine-py.fullname" . }}
{{- $scheme := include "kine-py.clientScheme" . }}
{{- $endpoints := list }}
{{- range $i := until (int .Values.raft.replicas) }}
{{- $endpoints = append $endpoints (printf "%s://%s:2379" $scheme (include "kine-py.raftMemberHost" (list $ (printf "%s-%d" $fullname $i)))) }}
{{- end }}
{{- join "," $endpoints }}
{{- end }}
