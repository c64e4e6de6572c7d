{{/* Names and labels. */}}
{{- define "medic.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "medic.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "watcher"). */}}
{{- define "medic.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The components this mode installs, as a list of names. */}}
{{- define "medic.components" -}}
{{- if eq .Values.mode "single" -}}
single
{{- else -}}
watcher remediator notifier
{{- end -}}
{{- end -}}

{{/* The ServiceAccount a component runs as. */}}
{{- define "medic.serviceAccount" -}}
{{- if eq .component "single" -}}
{{ include "medic.fullname" .root }}
{{- else -}}
{{ include "medic.fullname" .root }}-{{ .component }}
{{- end -}}
{{- end -}}

{{/*
PolicyRules normalised: one rule per (apiGroup, resource), verbs merged and sorted, keys in
order. The same shape medic.chart.rbac.normalise gives, so tests compare the two.
*/}}
{{- define "medic.rules" -}}
{{- $grants := dict -}}
{{- range $rule := . -}}
{{- range $group := $rule.apiGroups -}}
{{- range $resource := $rule.resources -}}
{{- $key := printf "%s|%s" $group $resource -}}
{{- $had := get $grants $key | default list -}}
{{- $_ := set $grants $key (concat $had $rule.verbs | uniq | sortAlpha) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $rules := list -}}
{{- range $key, $verbs := $grants -}}
{{- $parts := splitn "|" 2 $key -}}
{{- $rules = append $rules (dict "apiGroups" (list $parts._0) "resources" (list $parts._1) "verbs" $verbs) -}}
{{- end -}}
{{- if $rules -}}{{ toYaml $rules }}{{- else -}}[]{{- end -}}
{{- end -}}

{{/* The watcher's rules: what the enabled sources declare (files/rbac.yaml, generated). */}}
{{- define "medic.watcherRules" -}}
{{- $rbac := .Files.Get "files/rbac.yaml" | fromYaml -}}
{{- $rules := list -}}
{{- range .Values.watcher.sources -}}
{{- if not (hasKey $rbac.sources .) -}}
{{- fail (printf "watcher.sources: unknown source %q (known: %s); a third-party source's permissions go in rbac.extraWatcherRules" . (keys $rbac.sources | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $rules = concat $rules (get $rbac.sources .) -}}
{{- end -}}
{{- $selector := false -}}
{{- range $name, $config := .Values.watcher.config -}}
{{- if and (kindIs "map" $config) (kindIs "map" $config.filter) -}}
{{- if $config.filter.namespace_selector -}}{{- $selector = true -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if $selector -}}{{- $rules = concat $rules $rbac.namespaceSelector -}}{{- end -}}
{{- include "medic.rules" (concat $rules .Values.rbac.extraWatcherRules) -}}
{{- end -}}

{{/* The actions the remediator may run: the built-in rules' and the ones the values name. */}}
{{- define "medic.actions" -}}
{{- $rbac := .Files.Get "files/rbac.yaml" | fromYaml -}}
{{- $actions := .Values.remediator.actions -}}
{{- if .Values.remediator.builtinRules -}}
{{- $actions = concat $rbac.builtinRuleActions $actions -}}
{{- end -}}
{{- uniq $actions | sortAlpha | join "," -}}
{{- end -}}

{{/* The remediator's rules: what its actions declare; in dry-run only their reads. */}}
{{- define "medic.remediatorRules" -}}
{{- $rbac := .Files.Get "files/rbac.yaml" | fromYaml -}}
{{- $rules := list -}}
{{- $actions := include "medic.actions" . -}}
{{- range $action := (ternary list (splitList "," $actions) (eq $actions "")) -}}
{{- if not (hasKey $rbac.actions $action) -}}
{{- fail (printf "remediator.actions: unknown action %q (known: %s); a third-party action's permissions go in rbac.extraRemediatorRules" $action (keys $rbac.actions | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $declared := get $rbac.actions $action -}}
{{- $rules = concat $rules $declared.reads -}}
{{- if not $.Values.dryRun -}}{{- $rules = concat $rules $declared.writes -}}{{- end -}}
{{- end -}}
{{- include "medic.rules" (concat $rules .Values.rbac.extraRemediatorRules) -}}
{{- end -}}

{{/* MEDIC_* settings shared by every container. */}}
{{- define "medic.env.common" -}}
- name: MEDIC_CLUSTER
  value: {{ .Values.cluster | quote }}
- name: MEDIC_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: MEDIC_LOG_FORMAT
  value: json
- name: MEDIC_HEALTH__HOST
  value: 0.0.0.0
- name: MEDIC_HEALTH__PORT
  value: "8080"
{{- if .Values.nats.urls }}
- name: MEDIC_NATS__URLS
  value: {{ join "," .Values.nats.urls | quote }}
- name: MEDIC_NATS__STREAM_REPLICAS
  value: {{ .Values.nats.streamReplicas | quote }}
{{- end }}
{{- if .Values.nats.existingSecret }}
{{- range $env, $key := dict "MEDIC_NATS__USER" .Values.nats.userKey "MEDIC_NATS__PASSWORD" .Values.nats.passwordKey "MEDIC_NATS__TOKEN" .Values.nats.tokenKey }}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.nats.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "medic.env.kube" -}}
- name: MEDIC_KUBE__IN_CLUSTER
  value: "true"
{{- end -}}

{{- define "medic.env.watcher" -}}
- name: MEDIC_WATCHER_SOURCES
  value: {{ join "," .Values.watcher.sources | quote }}
{{- if .Values.watcher.config }}
- name: MEDIC_WATCHER_CONFIG
  value: {{ toJson .Values.watcher.config | quote }}
{{- end }}
{{- end -}}

{{- define "medic.env.remediator" -}}
- name: MEDIC_REMEDIATOR_DRY_RUN
  value: {{ .Values.dryRun | quote }}
- name: MEDIC_REMEDIATOR_BUILTIN_RULES
  value: {{ .Values.remediator.builtinRules | quote }}
{{- if .Values.remediator.rules }}
{{- /* The files, not the folder: a ConfigMap volume also holds each file under a hidden
       `..<timestamp>` folder, and a folder is searched recursively. */}}
- name: MEDIC_REMEDIATOR_RULES
  value: {{ include "medic.ruleFiles" . | quote }}
{{- end }}
{{- end -}}

{{- define "medic.ruleFiles" -}}
{{- $files := list -}}
{{- range $file := keys .Values.remediator.rules | sortAlpha -}}
{{- $files = append $files (printf "/etc/medic/rules/%s" $file) -}}
{{- end -}}
{{- join "," $files -}}
{{- end -}}

{{- define "medic.env.notifier" -}}
{{- if .Values.notifier.channels }}
- name: MEDIC_NOTIFIER_CHANNELS
  value: {{ toJson .Values.notifier.channels | quote }}
{{- end }}
{{- range .Values.notifier.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end -}}

{{/* One container: (dict "root" $ "component" "watcher" "args" (list ...) "resources" ...). */}}
{{- define "medic.container" -}}
{{- $root := .root -}}
- name: {{ .component }}
  image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args: {{ toJson .args }}
  env:
    {{- include "medic.env.common" $root | nindent 4 }}
    {{- if has .component (list "single" "watcher" "remediator") }}
    {{- include "medic.env.kube" $root | nindent 4 }}
    {{- end }}
    {{- if has .component (list "single" "watcher") }}
    {{- include "medic.env.watcher" $root | nindent 4 }}
    {{- end }}
    {{- if has .component (list "single" "remediator") }}
    {{- include "medic.env.remediator" $root | nindent 4 }}
    {{- end }}
    {{- if has .component (list "single" "notifier") }}
    {{- include "medic.env.notifier" $root | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: 8080
  livenessProbe:
    httpGet: {path: /healthz, port: http}
    {{- toYaml $root.Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet: {path: /readyz, port: http}
    {{- toYaml $root.Values.probes.readiness | nindent 4 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if eq .component "single" }}
    - name: data
      mountPath: /data
    {{- end }}
    {{- if and (has .component (list "single" "remediator")) $root.Values.remediator.rules }}
    - name: rules
      mountPath: /etc/medic/rules
      readOnly: true
    {{- end }}
{{- end -}}

{{/* The pod spec around one container. */}}
{{- define "medic.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "medic.serviceAccount" . }}
automountServiceAccountToken: {{ ne .component "notifier" }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
containers:
  {{- include "medic.container" . | nindent 2 }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if eq .component "single" }}
  - name: data
    {{- if $root.Values.single.persistence.enabled }}
    persistentVolumeClaim:
      claimName: {{ include "medic.fullname" $root }}-data
    {{- else }}
    emptyDir: {}
    {{- end }}
  {{- end }}
  {{- if and (has .component (list "single" "remediator")) $root.Values.remediator.rules }}
  - name: rules
    configMap:
      name: {{ include "medic.fullname" $root }}-rules
  {{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
