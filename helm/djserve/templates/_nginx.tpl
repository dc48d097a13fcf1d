{{/*
The sidecar's nginx.conf. The root file system is read-only, so the pid file and every temp path live
in the /tmp emptyDir; nginx runs as the pod's non-root user and listens on an unprivileged port.

Each worker process holds 10,240 connections: 10,000 clients, idle, slow or trickling, and their
requests in flight to uvicorn (each takes a second connection, upstream). A connection is a file
descriptor, and so is a buffered body's temp file: worker_rlimit_nofile raises the soft limit above
worker_connections, as a non-root process may up to the runtime's hard limit (containerd and CRI-O:
524288 or more). For more clients, raise nginx.workerProcesses with the nginx CPU limit.
Clients are cut off before djserve's own deadlines would (header_timeout 10 s): a slow or silent
client costs nginx a little memory, never a uvicorn connection.
*/}}
{{- define "djserve.nginxConf" -}}
daemon off;
worker_processes {{ .Values.nginx.workerProcesses }};
worker_rlimit_nofile 16384;
pid /tmp/nginx.pid;
error_log stderr warn;

events {
    worker_connections 10240;
}

http {
    access_log off;
    server_tokens off;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    # djserve's max_body_bytes (0: no limit in either), so nginx answers 413 before buffering a body
    # that djserve would refuse.
    client_max_body_size {{ include "djserve.maxBodyBytes" . }};
    client_header_timeout 5s;
    client_body_timeout 10s;
    send_timeout 10s;
    # Longer than the idle timeout of the proxies in front (ingress-nginx's upstream keep-alive and
    # cloud load balancers' 60 s), so they close an idle connection first and never reuse one that
    # nginx is closing.
    keepalive_timeout 75s;
    # A timed-out connection is reset, so its buffers are freed at once instead of lingering.
    reset_timedout_connection on;

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
