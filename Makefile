# TMS Console: the two commands are `make run` and `make test`.
#
# Everything runs from .venv, created with python3.11 on first use. A stamp
# file per requirements set skips the install while the pinned requirements
# are unchanged (make compares the stamp's time with the requirements files).

# python3.11 by name; a python3 that is 3.11 will do where that name is missing.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3.11)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MANAGE := $(PY) manage.py
PYTEST_ARGS ?=

RUNTIME_STAMP := $(VENV)/.stamp-runtime
DEV_STAMP := $(VENV)/.stamp-dev

# The dev SECRET_KEY default is only accepted with DEBUG on: the local
# targets turn it on unless the caller set DEBUG explicitly.
migrate seed collectstatic run otp: export DEBUG ?= 1

.DEFAULT_GOAL := help
.PHONY: help venv install install-dev install-deploy deploy-check image-check migrate seed collectstatic run otp test test-pg lint bench clean distclean

help:
	@echo "make run      create .venv, install, migrate, seed the demo and start every process"
	@echo "make otp      print a demo user's current one-time code (OTP_USER=demo-dispatcher)"
	@echo "make test     run the whole test suite (honours DATABASE_URL / REDIS_URL / MQTT_URL)"
	@echo "make test-pg  run the suite against local PostgreSQL + Redis + Mosquitto"
	@echo "make lint     ruff check, ruff format --check, mypy, lint-imports (the layers), bandit"
	@echo "make image-check   build the container image with buildah, run check --deploy inside it"
	@echo "make deploy-check  render and validate deploy/ offline (kustomize, kubernetes-validate, check-jsonschema, checkov, promtool)"
	@echo "make bench    run the benchmarks in benchmarks/ and print their figures"
	@echo "make clean    remove var/ (local database, queue, static files) and caches"
	@echo "make distclean  clean, and remove .venv"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(PY)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PIP) install --quiet -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $(RUNTIME_STAMP) $@

install: $(RUNTIME_STAMP)

install-dev: $(DEV_STAMP)

# The deployment validators (kubernetes-validate, check-jsonschema, python-hcl2,
# checkov) live in a venv of their own: checkov pins libraries the app also uses.
DEPLOY_VENV ?= .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.stamp-deploy

$(DEPLOY_STAMP): requirements-deploy.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet -r requirements-deploy.txt
	@touch $@

install-deploy: $(DEPLOY_STAMP)

# Render and validate deploy/ offline: kustomize, kubernetes-validate, check-jsonschema,
# the Terraform checks, promtool on the alert rules and their unit tests.
# Build the Containerfile with buildah and check the image from inside (root; apt packages
# buildah and debootstrap).
image-check:
	scripts/image_check.sh

deploy-check: install-deploy
	scripts/deploy_check.sh
	promtool check rules deploy/prometheus/rules/*.rules.yaml
	promtool test rules deploy/prometheus/tests/*.test.yaml

# createcachetable: only the database cache backend (no REDIS_URL) uses the
# table; with Redis configured the command does nothing.
migrate: install
	$(MANAGE) migrate --noinput
	$(MANAGE) createcachetable

collectstatic: install
	$(MANAGE) collectstatic --noinput --verbosity 0

seed: migrate
	@if $(MANAGE) help seed_demo >/dev/null 2>&1; then \
		CARRIER_SIM_URL=$${CARRIER_SIM_URL:-http://127.0.0.1:$${CARRIER_SIM_PORT:-8100}} \
		PARTNER_BASE_URL=$${PARTNER_BASE_URL:-http://127.0.0.1:$${PARTNER_PORT:-8001}} $(MANAGE) seed_demo; \
	else \
		echo "seed_demo is not available in this checkout; skipping the demo data"; \
	fi

run: migrate collectstatic seed
	$(PY) scripts/run_all.py

# The current one-time code of a demo user: `make otp OTP_USER=demo-oncall`.
OTP_USER ?= demo-dispatcher
otp: install
	@$(MANAGE) demo_otp $(OTP_USER)

test: install-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The local services this machine runs (see README "Running with PostgreSQL and Redis").
test-pg: install-dev
	DATABASE_URL=$${DATABASE_URL:-postgres://root@127.0.0.1:5432/tms} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	MQTT_URL=$${MQTT_URL:-mqtt://127.0.0.1:1883} \
	TMS_REQUIRE_SERVICES=1 \
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install-dev
	@status=0; \
	echo "== ruff check"; $(VENV)/bin/ruff check --output-format=concise . || status=1; \
	echo "== ruff format --check"; $(VENV)/bin/ruff format --check . || status=1; \
	echo "== mypy"; $(VENV)/bin/mypy . || status=1; \
	echo "== lint-imports"; $(VENV)/bin/lint-imports --no-cache || status=1; \
	echo "== bandit (Medium and High fail)"; \
	$(VENV)/bin/bandit -c pyproject.toml -r . --severity-level medium --quiet || status=1; \
	exit $$status

# benchmarks/run_all.py runs each benchmarks/bench_*.py (each in its own
# throw-away database, each with a time limit) and prints every figure next to
# the baseline measured in the same run. They measure PostgreSQL (and Redis for
# the live map): the local servers unless DATABASE_URL / REDIS_URL say otherwise.
bench: install-dev
	DATABASE_URL=$${DATABASE_URL:-postgres://root@127.0.0.1:5432/tms_bench} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	$(PY) benchmarks/run_all.py

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
