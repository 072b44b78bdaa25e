# syntax=docker/dockerfile:1
# coroq worker and producer image.
#   docker build -t coroq .
#   docker run --rm coroq worker check          # CMD is `worker`; `producer ...` works too
# Stage 1 builds a virtualenv with coroq and its dependencies (all from wheels); stage 2 is a
# fresh slim Python with that virtualenv only: no pip cache, no build tools, no sources.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/coroq
WORKDIR /src
# The releases of `coroq[fast]` (uvloop included) and of the build backend, pinned with their
# hashes in the lock (.ci/lock writes it): two builds a month apart install the same packages.
COPY config/requirements/worker.txt ./requirements.txt
RUN /opt/coroq/bin/pip install --no-cache-dir --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY producer ./producer
COPY worker ./worker
# A non-editable install copies the packages into the virtualenv; everything it needs is there.
RUN /opt/coroq/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/coroq/bin/python -m compileall -q /opt/coroq/lib

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="coroq" \
      org.opencontainers.image.description="Redis-backed job queue: worker and producer"
ENV PATH=/opt/coroq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COROQ_LOG_FORMAT=json
RUN groupadd --system --gid 10001 coroq \
    && useradd --system --uid 10001 --gid coroq --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin coroq
COPY --from=build /opt/coroq /opt/coroq
USER 10001:10001
WORKDIR /tmp
# Prometheus /metrics, /healthz and /readyz (COROQ_METRICS_PORT; 0 turns them off).
EXPOSE 9191
# `worker health` asks the running worker's /healthz and /readyz (or pings Redis when the
# endpoints are off). The start period covers importing task modules and reaching Redis.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["worker", "health", "--timeout", "3"]
# SIGTERM starts the graceful drain (shutdown_grace, 30 s by default): give `docker stop`
# a longer timeout (compose: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["worker"]
