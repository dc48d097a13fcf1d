# djserve: Django on uvicorn, as container images.
#
# Targets: runtime (no preset), production, proxy, websocket, and demo (the demo project of python/ on
# top of the variant named by VARIANT). Needs BuildKit: `make images`, `docker compose build`, or
# `DOCKER_BUILDKIT=1 docker build --target production -t djserve:production .`.
# Behind a TLS-intercepting proxy add `--secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt`;
# offline, `make wheels` then `--network none --build-arg PIP_NO_INDEX=1` (see README).
#
# Every Python stage starts from PYTHON_IMAGE, which may be the official image (Python in
# /usr/local/bin, tini missing) or a Debian trixie one (/usr/bin/python3, tini present, no pip).
ARG PYTHON_IMAGE=python:3.13-slim-trixie
ARG VARIANT=production

FROM ${PYTHON_IMAGE} AS builder
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
# Set to 1 (with `make wheels` and `--network none`) to install from the host wheelhouse only.
ARG PIP_NO_INDEX
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=docker/pip-install.sh,target=/usr/local/bin/pip-install.sh \
    --mount=type=bind,source=requirements/image.lock,target=/tmp/image.lock \
    --mount=type=bind,source=wheels,target=/wheels \
    pip-install.sh /opt/venv/bin/pip -r /tmp/image.lock
# The wheels' extension modules carry their symbol tables and debug information, which nothing in the
# container reads: 27 MB of the venv's 43 MB, 4 MB once stripped (bench/findings.md). binutils is for
# this stage only. An offline build (PIP_NO_INDEX) reaches no Debian mirror, and keeps them.
# hadolint ignore=DL3008
RUN if [ -z "${PIP_NO_INDEX:-}" ]; then \
        apt-get update -q \
        && apt-get install -y -q --no-install-recommends binutils >/dev/null \
        && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} +; \
    fi
# setuptools comes from the lock, so djserve builds without fetching a build backend; it is removed
# once djserve is built. The source is bound read-write because the build writes its metadata next to
# it; nothing of that is kept. Bytecode is compiled for everything that runs in the container, not for
# pip, which only runs while a user's image is built.
RUN --mount=type=bind,source=entrypoint,target=/tmp/entrypoint,rw \
    /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation --no-index /tmp/entrypoint \
    && /opt/venv/bin/pip uninstall -q -y setuptools \
    && find /opt/venv/lib/python3*/site-packages/pip -name __pycache__ -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q -x '/site-packages/pip/' /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# tini as PID 1 forwards SIGTERM to djserve and reaps orphaned processes. The Debian stand-in base
# has it; the official image gets Debian's package (versions follow the suite's security updates).
# The app user is numeric and in group 0, as platforms that run an arbitrary UID (OpenShift) keep
# group 0; its home is /tmp, the one writable place of a read-only container.
# hadolint ignore=DL3008
RUN if ! command -v tini >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends tini \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && echo 'app:x:10001:0:djserve app:/tmp:/usr/sbin/nologin' >>/etc/passwd \
    && mkdir -p /app /etc/djserve
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0644 docker/healthcheck.py /opt/djserve/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
LABEL org.opencontainers.image.title="djserve" \
      org.opencontainers.image.description="Django on uvicorn: layered configuration, presets, health probes" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
WORKDIR /app
USER 10001:0
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/djserve/healthcheck.py"]
ENTRYPOINT ["tini", "--", "djserve"]
CMD ["serve"]

FROM runtime AS production
ENV DJSERVE_PRESET=production
LABEL org.opencontainers.image.title="djserve (production)"

FROM runtime AS proxy
ENV DJSERVE_PRESET=proxy
LABEL org.opencontainers.image.title="djserve (proxy: behind a reverse proxy sidecar)"

FROM runtime AS websocket
ENV DJSERVE_PRESET=websocket
LABEL org.opencontainers.image.title="djserve (websocket)"

# The demo project, built exactly as a user's project would be on top of a variant.
FROM ${VARIANT} AS demo
ARG VARIANT
USER 0
ARG PIP_NO_INDEX
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=docker/pip-install.sh,target=/usr/local/bin/pip-install.sh \
    --mount=type=bind,source=python/requirements.txt,target=/tmp/requirements.txt \
    --mount=type=bind,source=wheels,target=/wheels \
    pip-install.sh pip -r /tmp/requirements.txt
COPY python/ /app/
# /data is where staging keeps the SQLite database, in a named volume that takes this ownership.
RUN python -m compileall -q /app \
    && install -d -o 10001 -g 0 -m 2775 /data
# The demo signs nothing that must outlive a process, so it may start with a random key per process
# (python/README.md); a real project reads DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE instead. The
# variable is a switch, not a secret, whatever its name suggests to hadolint.
# hadolint ignore=DL3064
ENV DJANGO_SETTINGS_MODULE=demo.settings \
    DJANGO_EPHEMERAL_SECRET_KEY=1
LABEL org.opencontainers.image.title="djserve demo (${VARIANT})"
USER 10001:0
