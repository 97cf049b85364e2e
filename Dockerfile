# syntax=docker/dockerfile:1
# ECMO Risk Service image. Build from the repository root: docker build -t ecmo-risk-service .
# (the name the Helm chart's image.repository, pyproject.toml and the OCI title label use)
#
# Two stages: "build" installs the runtime lock (requirements/runtime.lock, every package checked
# against its sha256) into a virtualenv;
# "runtime" copies that virtualenv, the service source and the baked-in models, and runs as a
# non-root user. The service runs from source in /app (not from site-packages) so that the default
# model directory (service/config.py REPO_MODELS_DIR = <source root>/models) is /app/models, where
# the models are baked in. A hospital mounts its own models elsewhere and sets ECMO_MODEL_DIR.
#
# tests/deploy/test_image.py parses ENV, CMD and HEALTHCHECK from this file and runs them
# against real gunicorn, so keep them on one line each.

# The base image: an official python slim image at a current patch release, pinned by digest (the
# tag alone moves when Docker republishes it). Both stages use the same one. To move it: pick the
# tag, take its digest from `docker buildx imagetools inspect python:<tag>`, update both lines.
FROM python:3.12.12-slim-bookworm@sha256:593bd06efe90efa80dc4eee3948be7c0fde4134606dd40d8dd8dbcade98e669c AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/runtime.lock ./
# Only the runtime set (with the pinned sklearn/numpy/joblib the model artifacts need), every
# package checked against the lock's hashes; the train/dev extras stay out of the image.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r runtime.lock

FROM python:3.12.12-slim-bookworm@sha256:593bd06efe90efa80dc4eee3948be7c0fde4134606dd40d8dd8dbcade98e669c AS runtime
LABEL org.opencontainers.image.title="ecmo-risk-service" \
      org.opencontainers.image.version="1.0.0" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary" \
      org.opencontainers.image.description="Calibrated ECMO risk predictions (VA-ECMO weaning, ICH)"
# nginx runs in front of gunicorn (the gunicorn master starts it; service/front.py): it reads every
# request completely before a worker sees it, so slow clients cannot hold the workers. Debian's
# nginx-light, pinned to bookworm's 1.22.1 with its security updates.
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'nginx-light=1.22.1-9+deb12u*' \
    && rm -rf /var/lib/apt/lists/*
# Numeric UID/GID so Kubernetes can verify runAsNonRoot without resolving a user name.
RUN groupadd --system --gid 10001 ecmo \
    && useradd --system --uid 10001 --gid ecmo --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ecmo
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root service/ ./service/
COPY --chown=root:root models/ ./models/
# The contract, served at /openapi.yaml and drawn by Swagger UI at /docs.
COPY --chown=root:root openapi.yaml ./
# Compile bytecode now: with a read-only root filesystem nothing can be written at run time.
RUN python -m compileall -q /app/service
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ECMO_BIND=0.0.0.0:8000 PROMETHEUS_MULTIPROC_DIR=/tmp/ecmo-prometheus
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('ECMO_BIND', '0.0.0.0:8000').rsplit(':', 1)[1]; urllib.request.urlopen('http://127.0.0.1:' + port + '/health/live', timeout=4)"]
# Exec form: gunicorn is PID 1 and receives SIGTERM (graceful drain, passed on to nginx) and SIGHUP
# (model reload). Its config starts nginx on ECMO_BIND and binds the workers to a Unix socket.
CMD ["gunicorn", "-c", "service/gunicorn_conf.py", "service.app:create_app()"]
