# ÉQUILIBRES evaluation pipeline — the documented entry point.
# `make help` lists the targets. Every target builds the virtual environment first if needed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SCALE  ?= 0.25
SEED   ?= 20240101
DATA   ?= data/extract_s$(SCALE)_seed$(SEED)
BUILD  ?= build
CONFIG ?=
LANG_REPORT ?= fr
ENGINE ?= duckdb
PYTEST_ARGS ?=
CONFIG_OPT := $(if $(CONFIG),--config $(CONFIG),)
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv sysdeps data validate run report test test-fast bench lint clean distclean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: SCALE=$(SCALE) SEED=$(SEED) DATA=$(DATA) BUILD=$(BUILD) CONFIG=<file.toml> ENGINE=duckdb|spark LANG_REPORT=fr|en"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[spark,dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create the virtual environment and install the project (with Spark and dev extras)

sysdeps: ## Install the Debian packages the report and its tests need (chromium, poppler-utils, fonts), when root
	@if command -v chromium >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1; then \
	  echo "system packages present"; \
	elif [ "$$(id -u)" = "0" ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils fonts-dejavu-core >/dev/null) \
	  || echo "WARNING: could not install chromium/poppler-utils; browser tests will be skipped"; \
	else echo "WARNING: not root: install chromium and poppler-utils to run the browser tests"; fi

$(DATA)/IR_BEN_R.parquet: | $(STAMP)
	$(BIN)/equilibres generate --scale $(SCALE) --seed $(SEED) --out $(DATA)

data: $(STAMP) $(DATA)/IR_BEN_R.parquet ## Generate the default synthetic extract (SCALE, SEED) under data/

validate: data ## Validate the extract against the SNDS input contract
	$(BIN)/equilibres validate $(DATA)

run: data ## Bring the chain (validate, clean, match, indicators, surveys, sweep, sensitivity) up to date in BUILD: re-runs only what changed
	$(BIN)/equilibres run --data $(DATA) --out $(BUILD) --engine $(ENGINE) --no-report $(CONFIG_OPT)

report: data ## Everything up to date, then the HTML and PDF report: BUILD/report/report.{html,pdf}
	$(BIN)/equilibres run --data $(DATA) --out $(BUILD) --engine $(ENGINE) --lang $(LANG_REPORT) $(CONFIG_OPT)
	@echo "Report: $(BUILD)/report/report.html and $(BUILD)/report/report.pdf"

test: $(STAMP) sysdeps ## Run the whole test suite (the CI command)
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP) ## Run the tests not marked slow, spark or browser
	$(BIN)/python -m pytest -n 2 -m "not slow and not spark and not browser" $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks; results are written under benchmarks/results/
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m benchmarks.run_all

lint: $(STAMP) ## Lint with ruff
	$(BIN)/ruff check .

clean: ## Remove the build directory
	rm -rf $(BUILD)

distclean: clean ## Remove the build directory, generated data and the virtual environment
	rm -rf data $(VENV)
