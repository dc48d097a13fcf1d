# Stand-in for the official prom/prometheus image: Debian's prometheus package, with the official
# image's entrypoint (the binary itself), configuration path, data directory (/prometheus) and
# unprivileged user, so that compose's flags run on either.
ARG DEBIAN_IMAGE=localhost/debian:trixie
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o nobody -g nogroup /prometheus
# nobody is 65534 in Debian and in the official image's busybox alike.
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
VOLUME /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
