#!/bin/sh
# pip install for image builds: hash-checked wheels only, from the index or, offline
# (PIP_NO_INDEX=1), from the host wheelhouse bound at /wheels. A CA bundle handed to the build as the
# secret `ca-bundle` (a TLS-intercepting proxy's) is trusted for that one command and is never written
# to a layer. Usage: pip-install.sh PIP -r LOCKFILE [...]
set -eu
pip=$1
shift
if [ -s /run/secrets/ca-bundle ]; then
    export PIP_CERT=/run/secrets/ca-bundle
fi
exec "$pip" install --require-hashes --only-binary=:all: --find-links /wheels "$@"
