# Stand-in for the official python:3.13-slim-trixie where no registry can be reached: Debian's
# python3 (3.13) lives at /usr/bin/python3 and has no pip of its own, so builds make a venv.
# The official image builds CPython with every optional stdlib module; Debian splits dbm.gnu out
# into python3-gdbm, which is added so that the stand-in passes the official images' own tests
# (tests/integration/test_builds.py runs them).
ARG DEBIAN_IMAGE=localhost/debian:trixie
FROM ${DEBIAN_IMAGE}
# Versions follow the trixie suite (and its security updates) rather than pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-gdbm python3-venv tini \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
