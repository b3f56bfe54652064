# wsgistack: build, run and test.  See docs/airgapped.md for the image build.
#
#   make test         image + venv + editable install + pytest, as CI runs it; PYTEST_ARGS=...
#   make test-fast    the same without the image and the compose topology tests
#   make check        ruff and mypy as pyproject.toml configures them (CI runs it first)
#   make bench        the benchmark (bench/README.md); bench-quick: a 3-minute smoke run
#   make image        the one image for every role (air-gapped when it must be)
#   make up / down    the compose stack
#   make base-image   debootstrap the bookworm base (FORCE=1 rebuilds it)
#   make wheelhouse   host-side wheels for an offline image build
#   make postgres-image   Debian's PostgreSQL as an image (air-gapped when it must be)
#   make up-postgres  the compose stack on the `postgres` service instead of SQLite
#   make prometheus-image   Debian's Prometheus as an image (air-gapped when it must be)
#   make up PROFILE=monitoring   the stack and Prometheus on 127.0.0.1:9090 (docs/compose.md)
#   make swarm-up / swarm-down   deploy/stack.yaml on a Docker Swarm (docs/deploy.md)

IMAGE ?= wsgistack:latest
# The base used where no registry is reachable, and the Dockerfile's default.
BASE_IMAGE ?= wsgistack/base:bookworm
DEFAULT_BASE_IMAGE ?= python:3.11-slim
# auto: air-gapped build when $(DEFAULT_BASE_IMAGE) is not in the local engine;
# 1: always build on $(BASE_IMAGE); 0: plain `docker build .` (may pull).
AIRGAPPED ?= auto
# The database image of the multi-host deployments (docker/postgres/).
POSTGRES_IMAGE ?= wsgistack/postgres:15
DEFAULT_POSTGRES_BASE_IMAGE ?= debian:bookworm-slim
# The Prometheus of the `monitoring` profile (docker/prometheus/).
PROMETHEUS_IMAGE ?= wsgistack/prometheus:2
DEFAULT_PROMETHEUS_BASE_IMAGE ?= debian:bookworm-slim
# compose.yaml's profiles for `make up`, comma-separated: monitoring, postgres.
PROFILE ?=
# The development password of `make up-postgres`; set it for anything real.
POSTGRES_PASSWORD ?= compose-dev-only-insecure-db-password
STACK ?= wsgistack
DOCKER_BUILD_ARGS ?=
COMPOSE_UP_ARGS ?= -d
PYTEST_ARGS ?=
PYTHON ?= python3

WHEELHOUSE_STAMP := build/wheelhouse/.complete

.PHONY: test test-fast check image postgres-image prometheus-image base-image wheelhouse up up-postgres down \
	swarm-up swarm-down bench bench-quick

# Everything, as CI runs it: the image (for the compose topology tests), the
# venv with the test dependencies, then pytest.  `make test-fast` skips Docker.
test: image postgres-image prometheus-image
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[test]'
	WSGISTACK_IMAGE='$(IMAGE)' WSGISTACK_POSTGRES_IMAGE='$(POSTGRES_IMAGE)' \
		WSGISTACK_PROMETHEUS_IMAGE='$(PROMETHEUS_IMAGE)' .venv/bin/pytest $(PYTEST_ARGS)

test-fast:
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[test]'
	.venv/bin/pytest --ignore=tests/integration/topology $(PYTEST_ARGS)

# ruff, then mypy (its file list and strictness are in pyproject.toml: strict on uwsgiproto/
# and httpproto/).  Both run, so one pass shows every finding; any finding fails the target.
check:
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[dev]'
	@status=0; \
	echo ".venv/bin/ruff check ."; .venv/bin/ruff check . || status=1; \
	echo ".venv/bin/mypy"; .venv/bin/mypy || status=1; \
	if [ $$status -ne 0 ]; then echo "make check: FAILED (findings above)" >&2; fi; \
	exit $$status

base-image:
	BASE_IMAGE='$(BASE_IMAGE)' scripts/build-base-image.sh

wheelhouse: $(WHEELHOUSE_STAMP)

# Rebuilt when the dependencies (pyproject.toml) or the script change.
$(WHEELHOUSE_STAMP): pyproject.toml scripts/build-wheelhouse.sh
	WHEELHOUSE=build/wheelhouse scripts/build-wheelhouse.sh
	touch $@

image:
	@set -e; \
	mode='$(AIRGAPPED)'; \
	if [ "$$mode" = auto ]; then \
		if docker image inspect '$(DEFAULT_BASE_IMAGE)' >/dev/null 2>&1; then mode=0; else mode=1; fi; \
	fi; \
	if [ "$$mode" = 1 ]; then \
		echo "make image: building on $(BASE_IMAGE) from build/wheelhouse (air-gapped; AIRGAPPED=0 builds on $(DEFAULT_BASE_IMAGE))"; \
		$(MAKE) --no-print-directory base-image wheelhouse; \
		echo "docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) $(DOCKER_BUILD_ARGS) -t $(IMAGE) ."; \
		docker build --build-arg BASE_IMAGE='$(BASE_IMAGE)' $(DOCKER_BUILD_ARGS) -t '$(IMAGE)' .; \
	else \
		echo "docker build $(DOCKER_BUILD_ARGS) -t $(IMAGE) ."; \
		docker build $(DOCKER_BUILD_ARGS) -t '$(IMAGE)' .; \
	fi; \
	echo "make image: $(IMAGE) is $$(docker image inspect -f '{{.Size}}' '$(IMAGE)' | awk '{printf "%d MB", $$1 / 1000000}')"

# The same decision as `image`: a plain build where the base can be had,
# otherwise Debian's packages fetched by the host's apt (docs/deploy.md).
postgres-image:
	@set -e; \
	mode='$(AIRGAPPED)'; \
	if [ "$$mode" = auto ]; then \
		if docker image inspect '$(DEFAULT_POSTGRES_BASE_IMAGE)' >/dev/null 2>&1; then mode=0; else mode=1; fi; \
	fi; \
	if [ "$$mode" = 1 ]; then \
		echo "make postgres-image: building on $(BASE_IMAGE) from .debs fetched by the host (air-gapped; AIRGAPPED=0 builds on $(DEFAULT_POSTGRES_BASE_IMAGE))"; \
		$(MAKE) --no-print-directory base-image; \
		POSTGRES_IMAGE='$(POSTGRES_IMAGE)' BASE_IMAGE='$(BASE_IMAGE)' DOCKER_BUILD_ARGS='$(DOCKER_BUILD_ARGS)' \
			scripts/build-postgres-image.sh; \
	else \
		echo "docker build $(DOCKER_BUILD_ARGS) -t $(POSTGRES_IMAGE) docker/postgres"; \
		docker build --build-arg BASE_IMAGE='$(DEFAULT_POSTGRES_BASE_IMAGE)' $(DOCKER_BUILD_ARGS) \
			-t '$(POSTGRES_IMAGE)' docker/postgres; \
	fi

# The same decision again, for Debian's prometheus (docker/prometheus/).
prometheus-image:
	@set -e; \
	mode='$(AIRGAPPED)'; \
	if [ "$$mode" = auto ]; then \
		if docker image inspect '$(DEFAULT_PROMETHEUS_BASE_IMAGE)' >/dev/null 2>&1; then mode=0; else mode=1; fi; \
	fi; \
	if [ "$$mode" = 1 ]; then \
		echo "make prometheus-image: building on $(BASE_IMAGE) from .debs fetched by the host (air-gapped; AIRGAPPED=0 builds on $(DEFAULT_PROMETHEUS_BASE_IMAGE))"; \
		$(MAKE) --no-print-directory base-image; \
		PROMETHEUS_IMAGE='$(PROMETHEUS_IMAGE)' BASE_IMAGE='$(BASE_IMAGE)' DOCKER_BUILD_ARGS='$(DOCKER_BUILD_ARGS)' \
			scripts/build-prometheus-image.sh; \
	else \
		echo "docker build $(DOCKER_BUILD_ARGS) -t $(PROMETHEUS_IMAGE) docker/prometheus"; \
		docker build --build-arg BASE_IMAGE='$(DEFAULT_PROMETHEUS_BASE_IMAGE)' $(DOCKER_BUILD_ARGS) \
			-t '$(PROMETHEUS_IMAGE)' docker/prometheus; \
	fi

# PROFILE=monitoring,postgres turns compose.yaml's profiles on (COMPOSE_PROFILES,
# which compose v1.28+ and v2 read) and builds the images they need first.
comma := ,
empty :=
space := $(empty) $(empty)
UP_PROFILES := $(strip $(subst $(comma), ,$(PROFILE)))
KNOWN_PROFILES := monitoring postgres
ifneq ($(filter-out $(KNOWN_PROFILES),$(UP_PROFILES)),)
$(error PROFILE=$(PROFILE): unknown profile '$(filter-out $(KNOWN_PROFILES),$(UP_PROFILES))' (compose.yaml has: $(KNOWN_PROFILES)))
endif

up: image $(if $(filter monitoring,$(UP_PROFILES)),prometheus-image) \
		$(if $(filter postgres,$(UP_PROFILES)),postgres-image)
	WSGISTACK_IMAGE='$(IMAGE)' WSGISTACK_POSTGRES_IMAGE='$(POSTGRES_IMAGE)' \
		WSGISTACK_PROMETHEUS_IMAGE='$(PROMETHEUS_IMAGE)' \
		$(if $(UP_PROFILES),COMPOSE_PROFILES='$(subst $(space),$(comma),$(UP_PROFILES))') \
		$(if $(filter postgres,$(UP_PROFILES)),POSTGRES_PASSWORD='$(POSTGRES_PASSWORD)' \
			DATABASE_URL='postgres://wsgistack:$(POSTGRES_PASSWORD)@postgres:5432/wsgistack') \
		scripts/compose.sh up $(COMPOSE_UP_ARGS)

# compose.yaml's `postgres` profile, and every Django service pointed at it
# (PROFILE=monitoring adds Prometheus).
up-postgres:
	@$(MAKE) --no-print-directory up PROFILE='postgres$(if $(UP_PROFILES),$(comma)$(PROFILE))'

# Every profile's services too, whichever were started.
down:
	WSGISTACK_IMAGE='$(IMAGE)' COMPOSE_PROFILES=postgres,monitoring scripts/compose.sh down --remove-orphans

# deploy/stack.yaml on the Swarm this node belongs to (docs/deploy.md): the
# two secrets must exist (`docker secret create`), the images must be on
# every node (no registry is assumed: --resolve-image never).
swarm-up: image postgres-image
	WSGISTACK_IMAGE='$(IMAGE)' WSGISTACK_POSTGRES_IMAGE='$(POSTGRES_IMAGE)' \
		docker stack deploy --resolve-image never -c deploy/stack.yaml '$(STACK)'

swarm-down:
	docker stack rm '$(STACK)'

# The benchmark (bench/README.md): loopback only, servers and wrk on separate cores.
bench:
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[bench]'
	.venv/bin/python -m bench

bench-quick:
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[bench]'
	.venv/bin/python -m bench --quick
