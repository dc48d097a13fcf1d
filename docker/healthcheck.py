"""The images' HEALTHCHECK: GET djserve's health path on the local port, healthy on 200.

It runs every few seconds, so it imports only the standard library and ``djserve.defaults``, which is
stdlib-only and imports nothing (not the settings registry, which loads click and uvicorn). The port
and path come from the container's environment under the names djserve reads them by (the first one
set wins, as in ``djserve.config.options.REGISTRY``; ``tests/unit/test_healthcheck.py`` compares the
two lists), else from djserve's defaults. A port or path set only in a mounted settings file, a
``<VAR>_FILE`` or ``PRODUCTION_PROCESSES`` needs a HEALTHCHECK of its own. The probes answer on their
bare path under any root_path, so UVICORN_ROOT_PATH needs no handling here.

Plain http.client, so no HTTP(S)_PROXY variable of the container can route the probe elsewhere.
"""

import http.client
import os
import sys

from djserve import defaults

PORT_VARIABLES = ("UVICORN_PORT", "PORT")
HEALTH_PATH_VARIABLES = ("DJSERVE_HEALTH_PATH",)


def first_set(names: tuple[str, ...]) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def main() -> int:
    port = int(first_set(PORT_VARIABLES) or defaults.PORT)
    path = first_set(HEALTH_PATH_VARIABLES) or defaults.HEALTH_PATH
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
