# syntax=docker/dockerfile:1
# The shoprank platform image: one pinned base, one pinned lock file, two targets.
#
#   docker build --target serving  -t shoprank-serving  .   # the BentoML service (port 3000)
#   docker build --target pipeline -t shoprank-pipeline .   # Airflow api-server / scheduler /
#                                                           # dag-processor / celery worker, dvc, shoprank
#
# docker-compose.yml runs both past one machine (PostgreSQL, Redis, MinIO); docs/scaling.md and
# deploy/k8s.md say how each part grows. tests/test_dockerfile.py lints this file with hadolint and
# keeps it in step with requirements.lock.
#
# Base: Python 3.11 slim on Debian bookworm, pinned by exact tag AND by digest (the multi-arch index
# digest, as published by public Dockerfiles that pin the same tag; it could not be read from the
# registry here). To move it: `docker buildx imagetools inspect python:3.11.X-slim-bookworm` and
# replace tag and digest together.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---------------------------------------------------------------------------------------------------
# base: the runtime both targets share (system libraries, the unprivileged user, the workspace)
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# libgomp1: OpenMP runtime that the LightGBM wheel links against (torch and faiss bundle their own)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 shoprank \
 && useradd --system --uid 10001 --gid shoprank --home-dir /home/shoprank --create-home shoprank

# ---------------------------------------------------------------------------------------------------
# builder: the virtual environment, exactly requirements.lock, plus the shoprank package itself
FROM base AS builder
RUN python -m venv /opt/venv
WORKDIR /build
COPY requirements.lock ./
# requirements.lock pins torch==2.13.0, which PyPI serves as the CUDA build (several GB of nvidia-*
# wheels). The image runs on CPU (serving, orchestration, frozen-mode training), so torch alone comes
# from PyTorch's CPU index as 2.13.0+cpu: the same release, and `==2.13.0` matches it (PEP 440 ignores
# the local label). The second install then finds torch satisfied and takes everything else from PyPI.
# (--no-deps: torch's own dependencies are pinned in the lock and come with the second install.)
# A GPU training image would skip the first line (docs/scaling.md).
# DL3013 (pin pip versions) cannot see it, but the version is the lock's: torch_pin is `torch==X.Y.Z`.
# hadolint ignore=DL3013
RUN torch_pin="$(grep -E '^torch==' requirements.lock)" \
 && pip install --no-deps --index-url https://download.pytorch.org/whl/cpu "${torch_pin}" \
 && pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . && rm -rf /build/*

# builder-pipeline: what only the scaled pipeline needs (Celery executor, the S3/MinIO DVC remote),
# resolved against the lock so that nothing in it moves
FROM builder AS builder-pipeline
COPY requirements.lock deploy/requirements-scale.lock ./
RUN pip install -c requirements.lock -r requirements-scale.lock && rm -f ./*.lock

# ---------------------------------------------------------------------------------------------------
# app: the workspace both targets run in. The same files in both images, so a volume seeded from
# either holds the same tree. Code lives in the venv; /app is configuration and state.
FROM base AS app
WORKDIR /app
COPY --chown=shoprank:shoprank params.yaml dvc.yaml .dvcignore ./
COPY --chown=shoprank:shoprank .dvc/config ./.dvc/config
COPY --chown=shoprank:shoprank features ./features
COPY --chown=shoprank:shoprank dags ./dags
COPY --chown=shoprank:shoprank serving ./serving
RUN mkdir -p data/feedback/log models metrics .dvc/cache features/data bentoml \
 && chown -R shoprank:shoprank /app
# BENTOML_HOME in the workspace: `shoprank package` (a pipeline task) puts the champion into the
# BentoML model store, and the service replicas load it from there
ENV SHOPRANK_PARAMS=/app/params.yaml \
    SHOPRANK_LOG_FORMAT=json \
    BENTOML_HOME=/app/bentoml \
    BENTOML_DO_NOT_TRACK=True

# ---------------------------------------------------------------------------------------------------
# serving: the BentoML service of serving/service.py, serving the champion that `shoprank package`
# put into the model store (it does not start before one exists). Replicas scale out behind a load
# balancer (docker compose `deploy.replicas`, a Kubernetes Deployment + HPA).
FROM app AS serving
COPY --from=builder /opt/venv /opt/venv
ENV BENTOML_HOST=0.0.0.0 \
    BENTOML_PORT=3000
USER 10001:10001
EXPOSE 3000
# /readyz is BentoML's readiness endpoint: 200 once the service has loaded the champion
# (ShopRank.__is_ready__). urllib raises on any non-2xx, which fails the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]
CMD ["bentoml", "serve", "serving.service:ShopRank"]

# ---------------------------------------------------------------------------------------------------
# pipeline: Airflow 3 (api-server, scheduler, dag-processor, celery worker: pick with the command),
# the DAGs in /app/dags, dvc and the shoprank CLI they call. Executor, metadata database, broker,
# online store and DVC remote are settings (docker-compose.yml), never code.
FROM app AS pipeline
COPY --from=builder-pipeline /opt/venv /opt/venv
ENV AIRFLOW_HOME=/home/shoprank/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
# the log folder exists (and is the user's) before a volume is mounted on it
RUN mkdir -p /home/shoprank/airflow/logs && chown -R shoprank:shoprank /home/shoprank/airflow
USER 10001:10001
EXPOSE 8080
# the api-server's health; docker-compose.yml gives the other components their own checks
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/v2/monitor/health', timeout=8)"]
CMD ["airflow", "api-server"]
