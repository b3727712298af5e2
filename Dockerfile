# syntax=docker/dockerfile:1.7
#
# One image for the API and every pipeline stage; the first argument picks the
# role (see docker/entrypoint.sh):
#
#   docker build -t ragstream:local .
#   docker run --rm ragstream:local help
#   docker run --rm ragstream:local worker embed
#
# Build arguments:
#   BASE_IMAGE       a Debian or Ubuntu image with Python >= 3.11 as `python3`
#                    (and its venv module); default: the slim Debian CPython 3.11.
#   TORCH_INDEX_URL  where torch comes from. The default is PyTorch's CPU-only
#                    index (no CUDA libraries, a much smaller image). For NVIDIA
#                    GPUs use e.g. https://download.pytorch.org/whl/cu128: those
#                    wheels carry their CUDA runtime, the node only needs the
#                    driver and the container toolkit.
#   TORCH_VERSION    the torch release, kept in step with the Makefile.
#   EXTRAS           pip extras of ragstream; "minilm" (the default) ships the
#                    local embedding model; empty builds an image without torch
#                    for the hash and openai embedders.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtualenv with ragstream and its dependencies ------------------
FROM ${BASE_IMAGE} AS builder

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG EXTRAS=minilm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/sh", "-eu", "-c"]

RUN python3 -m venv /opt/venv

# torch first, from the chosen index, so that the extra never pulls a default
# (CUDA) build from PyPI.
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -n "$EXTRAS" ]; then \
      pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; \
    fi

WORKDIR /src

# The dependencies, in their own layer: a stub package lets pip resolve them
# before the source is copied, so a code change does not reinstall them.
# (The versions are the ranges in pyproject.toml.)
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p ragstream && touch ragstream/__init__.py; \
    pip install ".${EXTRAS:+[$EXTRAS]}"; \
    pip uninstall -y ragstream; \
    rm -rf ragstream build ./*.egg-info

COPY ragstream ./ragstream
RUN pip install --no-deps --no-cache-dir . \
    && ragstream --help > /dev/null

# --- runtime: the virtualenv, tini and an unprivileged user ----------------------
FROM ${BASE_IMAGE} AS runtime

ARG EXTRAS=minilm

LABEL org.opencontainers.image.title="ragstream" \
      org.opencontainers.image.description="Document-ingestion pipeline for RAG on Apache Kafka: API and stage workers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.ragstream.extras="${EXTRAS}"

# tini is PID 1: it forwards SIGTERM to the role (which finishes its batch,
# commits and exits) and reaps the parser's forked children.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ragstream \
    && useradd --system --uid 10001 --gid 10001 --create-home \
         --home-dir /home/ragstream --shell /usr/sbin/nologin ragstream

COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/ragstream-entrypoint

# Everything the roles write at run time lives under /tmp, so the root file
# system can be read-only (Kubernetes mounts an emptyDir there). The model is
# inside the venv: the Hugging Face libraries never go to the network.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/ragstream \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAGSTREAM_RUN_DIR=/tmp \
    RAGSTREAM_DATA_DIR=/tmp/ragstream \
    RAGSTREAM_API_PORT=8000 \
    RAGSTREAM_HEALTH_PORT=8081

USER 10001:10001
WORKDIR /home/ragstream

# 8000: the API; 8081: a worker's /livez, /readyz and /metrics.
EXPOSE 8000 8081

# Asks the running role: the API's /healthz, a worker's /livez; one-shot roles
# (migrate, topics) are healthy while they run.
HEALTHCHECK --interval=15s --timeout=6s --start-period=120s --retries=3 \
    CMD ["ragstream-entrypoint", "healthcheck"]

ENTRYPOINT ["tini", "--", "ragstream-entrypoint"]
CMD ["help"]
