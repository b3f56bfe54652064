# One image for every wsgistack role: edge, appserver, gunicorn, manage.
#
#   docker build -t wsgistack .                      # python:3.11-slim from a registry
#   make image                                       # air-gapped: see docs/airgapped.md
#
# The deps stage creates /opt/venv.  When the build context holds a wheelhouse
# (build/wheelhouse/*.whl, made by scripts/build-wheelhouse.sh) it installs from
# it alone, with --no-index; otherwise it installs from the package index.
# Works with the legacy builder and BuildKit alike: no `# syntax=` line, no
# RUN --mount, no heredocs.
ARG BASE_IMAGE=python:3.11-slim

# --- deps: the virtualenv with every third-party package -------------------------
FROM ${BASE_IMAGE} AS deps
# auto: use build/wheelhouse if it has wheels; 1: require it; 0: ignore it.
ARG USE_WHEELHOUSE=auto
# Extras of pyproject.toml to install with the runtime dependencies.
ARG EXTRAS=django,postgres
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# From pyproject.toml alone, so that a code change does not reinstall them.
# pyproject.toml is listed first so that the COPY has a source even when
# build/wheelhouse does not exist (an unmatched wildcard is allowed then).
COPY pyproject.toml build/wheelhouse* /wheelhouse/
RUN set -eu; \
    mode=$USE_WHEELHOUSE; \
    if [ "$mode" = auto ]; then \
        if ls /wheelhouse/*.whl >/dev/null 2>&1; then mode=1; else mode=0; fi; \
    fi; \
    if [ "$mode" = 1 ]; then \
        ls /wheelhouse/*.whl >/dev/null 2>&1 \
            || { echo "USE_WHEELHOUSE=1 but build/wheelhouse has no wheels: run scripts/build-wheelhouse.sh" >&2; exit 1; }; \
        echo "--no-index --find-links /wheelhouse" >/wheelhouse/pip-args; \
        echo "installing from the wheelhouse (offline)"; \
    else \
        : >/wheelhouse/pip-args; \
        echo "installing from the package index"; \
    fi; \
    python3 -c 'import sys, tomllib; p = tomllib.load(open("/wheelhouse/pyproject.toml", "rb"))["project"]; extras = [e.strip() for e in sys.argv[1].split(",") if e.strip()]; reqs = p.get("dependencies", []) + [r for e in extras for r in p["optional-dependencies"][e]]; print("\n".join(r for r in reqs if not r.startswith(p["name"] + "[")))' \
        "$EXTRAS" >/wheelhouse/requirements.txt; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --quiet $(cat /wheelhouse/pip-args) -r /wheelhouse/requirements.txt; \
    /opt/venv/bin/pip uninstall --quiet --yes setuptools >/dev/null 2>&1 || true; \
    find /opt/venv -name '*.po' -delete; \
    find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +; \
    /opt/venv/bin/python -m compileall -q -j 0 /opt/venv >/dev/null

# --- project: our code, laid out under /overlay exactly as it lands in the image -
FROM deps AS project
# The whole context as filtered by .dockerignore, so that the build works
# whichever of edge/, sampleapp/ ... exist yet.
COPY . /app
RUN set -eu; \
    rm -rf /app/build; \
    mkdir -p /overlay/docker /overlay/opt/venv/bin; \
    mv /app/docker/entrypoint.sh /overlay/docker/entrypoint.sh; \
    chmod 0755 /overlay/docker/entrypoint.sh; \
    rmdir /app/docker 2>/dev/null || true; \
    cp -a /app /tmp/src; \
    /opt/venv/bin/pip install --quiet --no-deps $(cat /wheelhouse/pip-args) --target /tmp/target /tmp/src; \
    site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
    mkdir -p "/overlay$site"; \
    if [ -d /tmp/target/bin ]; then mv /tmp/target/bin/* /overlay/opt/venv/bin/; rmdir /tmp/target/bin; fi; \
    mv /tmp/target/* "/overlay$site/"; \
    find /app -name '__pycache__' -type d -prune -exec rm -rf {} +; \
    /opt/venv/bin/python -m compileall -q /app >/dev/null; \
    mv /app /overlay/app

# --- the image -----------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="wsgistack" \
      org.opencontainers.image.description="edge + uWSGI-compatible appserver + Django sample, one image for every role"
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8 \
    XDG_RUNTIME_DIR=/tmp

# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && install -d -o app -g app -m 0755 /data /srv/static

# Metadata before the code, so that a code change rebuilds only the last layers.
WORKDIR /app
# edge (HTTP), appserver (uwsgi protocol), gunicorn (HTTP): the roles' defaults.
EXPOSE 8080 3031 8000 8443
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/docker/entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/docker/entrypoint.sh"]
CMD ["help"]
USER 10001:10001

# Files stay root-owned: the app user can read the code but not change it.
COPY --from=deps /opt/venv /opt/venv
COPY --from=project /overlay/ /
