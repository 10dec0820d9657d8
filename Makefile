# Two commands set everything up on a fresh machine:
#   make demo   virtualenv + install + default synthetic city + the main job
#   make test   virtualenv + install + the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
CITY := $(DATA)/city
export DAGSTER_HOME ?= $(abspath $(DATA)/dagster_home)

.PHONY: demo test install dagster bench clean

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

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/earlyhelp synth --out $(CITY)
	@echo
	@echo "Synthetic city written: landing files in $(CITY)/landing, truth in $(CITY)/truth"
	@echo "Dagster UI: DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dagster dev   (from this folder)"

test: install
	$(BIN)/python -m pytest -q

dagster: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev

bench: install
	$(BIN)/python benchmarks/synth.py

clean:
	rm -rf $(DATA)
