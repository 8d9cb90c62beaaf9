# syntax=docker/dockerfile:1
#
# agentwatch image: the `agentwatch` CLI (init, worker, ...) installed from this source tree.
#
#   docker build -t agentwatch .
#   docker run --rm agentwatch --help
#
# Used by docker-compose.yml for the `init` and `worker` services; see docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the project and its dependencies into a self-contained venv ----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/agentwatch \
 && /opt/agentwatch/bin/pip install --upgrade pip setuptools wheel

WORKDIR /src
# Metadata first so the dependency layer is cached while only the code changes.
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/agentwatch/bin/pip install . \
 && /opt/agentwatch/bin/agentwatch --help > /dev/null

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="agentwatch" \
      org.opencontainers.image.description="Real-time behavioural anomaly detection for AI agents" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 agentwatch \
 && useradd --system --uid 10001 --gid agentwatch --home-dir /var/lib/agentwatch \
      --create-home --shell /usr/sbin/nologin agentwatch

COPY --from=build /opt/agentwatch /opt/agentwatch

ENV PATH=/opt/agentwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGENTWATCH_DATA_DIR=/var/lib/agentwatch \
    AGENTWATCH_WORKER__WEB_HOST=0.0.0.0 \
    AGENTWATCH_WORKER__WEB_PORT=6066

USER agentwatch:agentwatch
WORKDIR /var/lib/agentwatch

# Worker stats: /agentwatch/stats/ (JSON) and /metrics/ (Prometheus text).
EXPOSE 6066

ENTRYPOINT ["agentwatch"]
CMD ["--help"]
