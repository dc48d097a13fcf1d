# The Helm chart (helm/djserve) and its offline tests: real Helm engine, kubernetes-validate, checkov,
# and a docker run of what the chart renders.
.PHONY: helm-test helm-render checkov-venv checkov-lock

CHECKOV_VENV := $(CURDIR)/.venv-checkov
CHECKOV_REQUIREMENTS := tests/helm/checkov-requirements.txt

# checkov pins packaging<24, which the shared .venv's pytest cannot share: it gets a venv of its own.
checkov-venv: $(CHECKOV_VENV)/.installed ## Install checkov into .venv-checkov for the chart's policy test.
$(CHECKOV_VENV)/.installed: $(CHECKOV_REQUIREMENTS)
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r $(CHECKOV_REQUIREMENTS)
	touch $@

checkov-lock: ## Re-pin checkov and its dependencies (latest release) into tests/helm/checkov-requirements.txt.
	rm -rf $(CHECKOV_VENV) && python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q checkov
	{ sed -n '1,2p' $(CHECKOV_REQUIREMENTS); $(CHECKOV_VENV)/bin/pip freeze --exclude-editable; } > $(CHECKOV_REQUIREMENTS).new
	mv $(CHECKOV_REQUIREMENTS).new $(CHECKOV_REQUIREMENTS) && touch $(CHECKOV_VENV)/.installed

helm-test: venv checkov-venv images ## Chart tests: render + strict lint, kubernetes-validate, checkov, schema, docker run of the render.
	CHECKOV=$(CHECKOV_VENV)/bin/checkov pytest -q tests/helm

helm-render: venv ## Render every helm/djserve/ci values file into build/helm/<name>/ for reading.
	$(PY) tests/helm/helmchart.py build/helm
