# Stand-in for the official postgres:17-trixie image: Debian's PostgreSQL 17 with the same data
# directory (/var/lib/postgresql/data), port, stop signal and first-start variables (POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB, each also as <NAME>_FILE; POSTGRES_HOST_AUTH_METHOD), so one compose
# file runs on either. It runs as the postgres user; see postgres-entrypoint.sh.
ARG DEBIAN_IMAGE=localhost/debian:trixie
FROM ${DEBIAN_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# No cluster at install time (the entrypoint makes one in PGDATA on first start), and every address
# in the sample configuration, as the official image does: the container's network is the boundary.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/djserve.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-17 \
    && rm -rf /var/lib/apt/lists/* \
    && sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/17/postgresql.conf.sample \
    && install -d -o postgres -g postgres -m 3777 /var/run/postgresql \
    && install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/17/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
# The package allocates the postgres user's id at install time, so only its name is known here.
# hadolint ignore=DL3066
USER postgres
EXPOSE 5432
# Fast shutdown: sessions are ended and the server stops cleanly (the official image's choice).
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
