{{- define "fireproof.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fireproof.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fireproof.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fireproof.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fireproof.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fireproof.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: guard
{{- end -}}

{{/*
Every value a release cannot start without, in one message (helm's schema would give one
cryptic line per empty string).
*/}}
{{- define "fireproof.requireSettings" -}}
{{- $missing := list -}}
{{- if not .Values.proxmox.url -}}{{- $missing = append $missing "proxmox.url (the Proxmox VE API, https://HOST:8006)" -}}{{- end -}}
{{- if not .Values.proxmox.tokenId -}}{{- $missing = append $missing "proxmox.tokenId (USER@REALM!TOKENNAME)" -}}{{- end -}}
{{- if not .Values.proxmox.existingSecret -}}{{- $missing = append $missing "proxmox.existingSecret (a Secret with the token's secret)" -}}{{- end -}}
{{- if $missing -}}
{{- fail (printf "required values not set: %s. See the chart's README: helm install ... --set proxmox.url=... --set proxmox.tokenId=... --set proxmox.existingSecret=..." (join "; " $missing)) -}}
{{- end -}}
{{- end -}}
