"""Values that the processes, the image's healthcheck, the chart and the benchmark share, declared once.

Standard library only, and nothing imported: ``docker/healthcheck.py`` runs it at every health check, and
the configuration registry (``djserve.config.options``) and the workers' hand-off (``djserve.handoff``)
take their defaults from here.
"""

PORT = 8000
HEALTH_PATH = "/-/health"
READY_PATH = "/-/ready"
METRICS_PATH = "/-/metrics"

THREADS = 8
HEADER_TIMEOUT = 10.0
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 100 * 1024 * 1024
WS_MAX_CONNECTIONS = 1000

EX_CONFIG = 78  # sysexits.h: configuration error
REDACTED = "<redacted>"  # in place of a secret, wherever djserve prints a value
# prometheus_client's multiprocess directory: the serving process prepares it, the workers write there.
METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
