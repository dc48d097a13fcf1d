{{/*
The sidecar's nginx.conf. The root file system is read-only, so the pid file and every temp path live
in the /tmp emptyDir; nginx runs as the pod's non-root user and listens on an unprivileged port.
*/}}
{{- define "djserve.nginxConf" -}}
daemon off;
worker_processes {{ .Values.nginx.workerProcesses }};
pid /tmp/nginx.pid;
error_log stderr warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
    server_tokens off;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    client_max_body_size {{ .Values.nginx.clientMaxBodySize }};

    {{- with .Values.nginx.realIpFrom }}

    # The client address and scheme come from the proxies in front only when they are trusted.
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
    {{- end }}

    map $http_upgrade $connection_upgrade {
        default upgrade;
        "" "";
    }

    upstream djserve {
        server 127.0.0.1:{{ include "djserve.appPort" . }};
        keepalive 16;
        # Idle upstream connections close here first, before uvicorn's keep-alive (75 s) ends them.
        keepalive_timeout 60s;
    }

    server {
        listen {{ .Values.nginx.port }};

        location = /-/nginx-health {
            return 200 "ok\n";
        }

        location / {
            proxy_pass http://djserve;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto {{ if .Values.nginx.realIpFrom }}$forwarded_proto{{ else }}$scheme{{ end }};
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout {{ .Values.nginx.proxyTimeoutSeconds }}s;
            proxy_send_timeout {{ .Values.nginx.proxyTimeoutSeconds }}s;
        }
    }
}
{{- end }}
