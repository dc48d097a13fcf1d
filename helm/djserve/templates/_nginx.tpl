{{/*
The sidecar's nginx.conf: files/nginx.conf, the one nginx configuration of the project (the compose
staging stack mounts it as it is), with what the values set. Each directive below must occur exactly
once in the file, and each marked region ("# chart: NAME" to "# chart: end") once, or the render
fails: a change to the file cannot silently keep the file's value in the chart.
*/}}
{{- define "djserve.nginxConf" -}}
{{- $conf := .Files.Get "files/nginx.conf" }}
{{- $directives := dict
    "worker_processes" (int64 .Values.nginx.workerProcesses)
    "client_max_body_size" (include "djserve.maxBodyBytes" .)
    "server" (printf "127.0.0.1:%s" (include "djserve.appPort" .))
    "proxy_read_timeout" (printf "%ds" (int64 .Values.nginx.proxyTimeoutSeconds))
    "proxy_send_timeout" (printf "%ds" (int64 .Values.nginx.proxyTimeoutSeconds)) }}
{{- range $name, $value := $directives }}
{{- $pattern := printf `(?m)^(\s*%s)\s[^;{]*;` $name }}
{{- if ne (len (regexFindAll $pattern $conf -1)) 1 }}
{{- fail (printf "files/nginx.conf must have one %s directive for the chart to set" $name) }}
{{- end }}
{{- $conf = regexReplaceAll $pattern $conf (printf "${1} %v;" $value) }}
{{- end }}
{{- $regions := dict
    "edge" (include "djserve.nginxEdge" . | trim)
    "listen" (printf "listen %d;" (int64 .Values.nginx.port)) }}
{{- range $name, $text := $regions }}
{{- $found := regexFindAll (printf `(?ms)^ *# chart: %s\n.*?^ *# chart: end\n` $name) $conf -1 }}
{{- if ne (len $found) 1 }}
{{- fail (printf "files/nginx.conf must have one region '# chart: %s' to '# chart: end' for the chart to fill" $name) }}
{{- end }}
{{- $indent := regexFind "^ *" (first $found) }}
{{- /* replace, not regexReplaceAll: nginx's $variables in the text are no group references. */}}
{{- $conf = replace (first $found) (printf "%s\n" (indent (len $indent) $text)) $conf }}
{{- end }}
{{- trimSuffix "\n" $conf }}
{{- end }}

{{/*
The client's address and scheme for X-Forwarded-For and X-Forwarded-Proto ($forwarded_proto): nginx's
own peer and scheme, or with nginx.realIpFrom what the trusted proxies in front send, from them only.
*/}}
{{- define "djserve.nginxEdge" -}}
{{- with .Values.nginx.realIpFrom -}}
{{- range . }}
set_real_ip_from {{ . }};
{{- end }}
real_ip_header X-Forwarded-For;
real_ip_recursive on;
geo $realip_remote_addr $from_trusted_proxy {
    default 0;
    {{- range . }}
    {{ . }} 1;
    {{- end }}
}
map "$from_trusted_proxy:$http_x_forwarded_proto" $forwarded_proto {
    default $scheme;
    "1:https" https;
    "1:http" http;
}
{{- else -}}
map $scheme $forwarded_proto {
    default $scheme;
}
{{- end }}
{{- end }}
