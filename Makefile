# Two commands set everything up on a fresh machine:
#   make demo   virtualenv + install + default synthetic city + the main job
#   make test   virtualenv + install + the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
CITY := $(DATA)/city
HOME_DIR := $(DATA)/home
export DAGSTER_HOME ?= $(abspath $(HOME_DIR)/dagster)

.PHONY: demo test install dagster bench docs clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install
	$(BIN)/earlyhelp synth --out $(CITY)
	$(BIN)/earlyhelp build --landing $(CITY)/landing --home $(HOME_DIR) --truth $(CITY)/truth
	@echo
	@echo "Synthetic city: $(CITY)/landing (truth in $(CITY)/truth)"
	@echo "Build warehouse: $(HOME_DIR)/warehouse/build.duckdb"
	@echo "Dagster UI: make dagster   (loads pipelines/definitions.py on the build's instance)"

test: install
	$(BIN)/python -m pytest -q

dagster: install $(DAGSTER_HOME)/dagster.yaml
	EARLYHELP_HOME=$(HOME_DIR) EARLYHELP_LANDING=$(CITY)/landing $(BIN)/dagster dev

bench: install
	$(BIN)/python benchmarks/synth.py
	$(BIN)/python benchmarks/ingest.py --landing $(CITY)/landing
	$(BIN)/python benchmarks/identity.py --city $(CITY)
	$(BIN)/python benchmarks/features.py --home $(HOME_DIR)

docs: install
	$(BIN)/python -m assets.dictionary --write-docs

clean:
	rm -rf $(DATA)
