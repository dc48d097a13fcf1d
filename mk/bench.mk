# Benchmarks (bench/): the presets against hand-written uvicorn, gunicorn and granian, side by side.
.PHONY: bench bench-smoke bench-image bench-tools bench-lock

bench-tools: ## Install the benchmark's host tools: Debian's wrk (taskset and nsenter come with util-linux).
	command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends wrk; }

# `images` runs base-images too, which provides PostgreSQL for the /db runs (POSTGRES_IMAGE in .env).
bench-image: images ## Build djserve-bench:servers: the production demo plus gunicorn, uvicorn-worker, granian, a Wagtail site.
	docker compose -f bench/compose.yaml build --quiet servers

bench: venv bench-tools bench-image ## Full benchmark (~22 min): bench/results.json, RESULTS.md, throughput.png, README tables.
	$(PY) -m bench --out bench

bench-smoke: venv bench-tools bench-image ## Every benchmark briefly (< 3 min) into a temp dir; fails if the harness breaks.
	out=$$(mktemp -d -t djserve-bench.XXXXXX) && $(PY) -m bench --smoke --out "$$out" && rm -rf "$$out"

bench-lock: venv ## Re-pin bench/servers.lock with hashes, constrained to what the image already has.
	uv pip compile bench/servers.in --generate-hashes --python-version 3.13 \
		--python-platform x86_64-manylinux_2_28 -c requirements/image.lock -c python/requirements.txt \
		--custom-compile-command "make bench-lock" -o bench/servers.lock
