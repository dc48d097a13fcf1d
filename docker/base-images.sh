#!/usr/bin/env bash
# Chooses the base images for the builds and the compose stack and records them in .env
# (PYTHON_IMAGE, NGINX_IMAGE, REDIS_IMAGE, POSTGRES_IMAGE, PROMETHEUS_IMAGE), which docker compose and `make images` read.
#
# An official image that is already present or can be pulled is used unchanged. Where no registry
# answers, a stand-in is built once from Debian trixie packages: debootstrap makes a minimal root
# file system, and small Dockerfiles in docker/base/ add python3, nginx, redis, postgresql or
# prometheus on top. A stand-in
# is rebuilt only when its recipe changes (its label records the recipe's hash).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_OFFICIAL=${PYTHON_OFFICIAL:-python:3.13-slim-trixie}
NGINX_OFFICIAL=${NGINX_OFFICIAL:-nginx:1.29-trixie}
REDIS_OFFICIAL=${REDIS_OFFICIAL:-redis:8.2-trixie}
POSTGRES_OFFICIAL=${POSTGRES_OFFICIAL:-postgres:17-trixie}
PROMETHEUS_OFFICIAL=${PROMETHEUS_OFFICIAL:-prom/prometheus:v3.5.0}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DEBIAN_LOCAL=localhost/debian:trixie
ENV_FILE=${ENV_FILE:-.env}
RECIPE_LABEL=org.djserve.base-recipe

log() { printf 'base-images: %s\n' "$*" >&2; }

present() { docker image inspect "$1" >/dev/null 2>&1; }

recipe_of() { docker image inspect -f "{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$1" 2>/dev/null || true; }

# The debootstrap root file system every stand-in starts from.
debian_base() {
    local recipe rootfs
    # Bump the trailing version when the root file system below changes.
    recipe="minbase+ca-certificates $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR v1"
    [[ $(recipe_of "$DEBIAN_LOCAL") == "$recipe" ]] && return
    command -v debootstrap >/dev/null || { log "debootstrap is missing: run 'make tools'"; exit 1; }
    rootfs=$(mktemp -d)
    log "debootstrap trixie into $rootfs (about a minute)"
    if ! debootstrap --variant=minbase --include=ca-certificates trixie "$rootfs" "$DEBIAN_MIRROR" \
        >"$rootfs.log" 2>&1; then
        tail -20 "$rootfs.log" >&2
        exit 1
    fi
    rm -f "$rootfs.log"
    # debootstrap lists only the release; stand-ins get point and security updates too.
    printf 'deb %s trixie main\ndeb %s trixie-updates main\ndeb %s trixie-security main\n' \
        "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" "$DEBIAN_SECURITY_MIRROR" >"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change "LABEL $RECIPE_LABEL=\"$recipe\"" \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' - "$DEBIAN_LOCAL" >/dev/null
    rm -rf "$rootfs"
}

# Builds docker/base/<name>.Dockerfile as <tag> unless an image from the same recipe (the Dockerfile,
# its docker/base/<name>-* files and the Debian root) exists.
stand_in() {
    local name=$1 tag=$2 recipe
    local files=("docker/base/$name.Dockerfile")
    debian_base
    shopt -s nullglob
    files+=(docker/base/"$name"-*)
    shopt -u nullglob
    recipe=$(cat "${files[@]}" <(docker image inspect -f '{{.Id}}' "$DEBIAN_LOCAL") | sha256sum | cut -c1-16)
    [[ $(recipe_of "$tag") == "$recipe" ]] && return
    log "building stand-in $tag"
    DOCKER_BUILDKIT=1 /usr/bin/docker build -q \
        --build-arg DEBIAN_IMAGE="$DEBIAN_LOCAL" --label "$RECIPE_LABEL=$recipe" \
        -t "$tag" -f "${files[0]}" docker/base >/dev/null
}

# Prints the image to use for one role: the official one where possible, else the stand-in.
resolve() {
    local official=$1 name=$2 local_tag=$3
    if present "$official" || docker pull -q "$official" >/dev/null 2>&1; then
        echo "$official"
        return
    fi
    stand_in "$name" "$local_tag"
    echo "$local_tag"
}

python_image=$(resolve "$PYTHON_OFFICIAL" python localhost/python:3.13-trixie)
nginx_image=$(resolve "$NGINX_OFFICIAL" nginx localhost/nginx:trixie)
redis_image=$(resolve "$REDIS_OFFICIAL" redis localhost/redis:trixie)
postgres_image=$(resolve "$POSTGRES_OFFICIAL" postgres localhost/postgres:trixie)
prometheus_image=$(resolve "$PROMETHEUS_OFFICIAL" prometheus localhost/prometheus:trixie)

images="PYTHON_IMAGE=$python_image
NGINX_IMAGE=$nginx_image
REDIS_IMAGE=$redis_image
POSTGRES_IMAGE=$postgres_image
PROMETHEUS_IMAGE=$prometheus_image"

# Keep whatever else the user put in .env; replace only the image names.
touch "$ENV_FILE"
{
    grep -vE '^(PYTHON|NGINX|REDIS|POSTGRES|PROMETHEUS)_IMAGE=' "$ENV_FILE" || true
    printf '%s\n' "$images"
} >"$ENV_FILE.tmp"
mv "$ENV_FILE.tmp" "$ENV_FILE"
log $images
