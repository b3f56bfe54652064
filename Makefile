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

IMAGE ?= wsgistack:latest
# The base used where no registry is reachable, and the Dockerfile's default.
BASE_IMAGE ?= wsgistack/base:bookworm
DEFAULT_BASE_IMAGE ?= python:3.11-slim
# auto: air-gapped build when $(DEFAULT_BASE_IMAGE) is not in the local engine;
# 1: always build on $(BASE_IMAGE); 0: plain `docker build .` (may pull).
AIRGAPPED ?= auto
DOCKER_BUILD_ARGS ?=
COMPOSE_UP_ARGS ?= -d
PYTEST_ARGS ?=
PYTHON ?= python3

WHEELHOUSE_STAMP := build/wheelhouse/.complete

.PHONY: test test-fast check image base-image wheelhouse up down bench bench-quick

# Everything, as CI runs it: the image (for the compose topology tests), the
# venv with the test dependencies, then pytest.  `make test-fast` skips Docker.
test: image
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[test]'
	WSGISTACK_IMAGE='$(IMAGE)' .venv/bin/pytest $(PYTEST_ARGS)

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

up: image
	WSGISTACK_IMAGE='$(IMAGE)' scripts/compose.sh up $(COMPOSE_UP_ARGS)

down:
	WSGISTACK_IMAGE='$(IMAGE)' scripts/compose.sh down --remove-orphans

# The benchmark (bench/README.md): loopback only, servers and wrk on separate cores.
bench:
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[bench]'
	.venv/bin/python -m bench

bench-quick:
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install -e '.[bench]'
	.venv/bin/python -m bench --quick
