# syntax=docker/dockerfile:1
# ECMO Risk Service image. Build from the repository root: docker build -t ecmo-risk .
#
# Two stages: "build" resolves the runtime dependencies listed in pyproject.toml into a virtualenv;
# "runtime" copies that virtualenv, the service source and the baked-in models, and runs as a
# non-root user. The service runs from source in /app (not from site-packages) so that the default
# model directory (service/config.py REPO_MODELS_DIR = <source root>/models) is /app/models, where
# the models are baked in. A hospital mounts its own models elsewhere and sets ECMO_MODEL_DIR.
#
# tests/deploy/test_image.py parses ENV, CMD and HEALTHCHECK from this file and runs them
# against real gunicorn, so keep them on one line each.

FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
# Only [project].dependencies (the runtime set, with the pinned sklearn/numpy/joblib the model
# artifacts need); the train/dev extras stay out of the image.
RUN python -m venv /opt/venv \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

FROM python:3.11.7-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="ecmo-risk-service" \
      org.opencontainers.image.description="Calibrated ECMO risk predictions (VA-ECMO weaning, ICH)"
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
# Exec form: gunicorn is PID 1 and receives SIGTERM (graceful drain) and SIGHUP (model reload).
CMD ["gunicorn", "-c", "service/gunicorn_conf.py", "service.app:create_app()"]
