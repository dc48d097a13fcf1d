"""The images' HEALTHCHECK: GET djserve's health path on the local port, healthy on 200.

Plain http.client, so no HTTP(S)_PROXY variable of the container can route the probe elsewhere and
nothing beyond the standard library is imported every interval. The port and path are read from the
environment as djserve reads them (UVICORN_PORT before PORT; DJSERVE_HEALTH_PATH) with djserve's
defaults; a port set only in a mounted config file needs its own HEALTHCHECK. The probes answer on
their bare path under any root_path, so UVICORN_ROOT_PATH needs no handling here.
"""

import http.client
import os
import sys


def main() -> int:
    port = int(os.environ.get("UVICORN_PORT") or os.environ.get("PORT") or 8000)
    path = os.environ.get("DJSERVE_HEALTH_PATH") or "/-/health"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except OSError as error:
        print(f"127.0.0.1:{port}{path}: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"127.0.0.1:{port}{path}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
