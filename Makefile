# The two ways in: `make run` and `make test`. Everything else is a helper of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install only when the project definition changes.
STAMP      := $(VENV)/.installed
STAMP_DEV  := $(VENV)/.installed-dev
export NLTK_DATA ?= $(abspath ../shared/nltk_data)

.PHONY: run weights test install install-dev lint conformance bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel

# paddlespeech is read for one data table (traditional -> simplified Chinese, the table upstream
# uses); its own dependencies (paddlepaddle...) are not needed, and pyproject cannot say --no-deps.
DATA_ONLY := paddlespeech==1.5.0

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	$(BIN)/pip install --no-deps $(DATA_ONLY)
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-deps $(DATA_ONLY)
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(STAMP_DEV)

## make run: set up .venv and start the service. When ./weights holds no model: upstream's pretrained
## models are fetched if the hub answers (GSV_FETCH_WEIGHTS=false skips that), else demo weights are written
run: install
	$(BIN)/gsv-server --demo-if-empty

## make weights: download upstream's pretrained models (default version) into ./weights; existing files kept.
## Options through WEIGHTS_ARGS, e.g. make weights WEIGHTS_ARGS="--versions v2ProPlus,v4 --g2pw --english-dicts"
weights: install
	$(BIN)/gsv-fetch-weights $(WEIGHTS_ARGS)

## make test: set up .venv with dev extras and run the whole test suite. The HTTP tests (many apps,
## each with its models) run in a process of their own, and modules marked `fullsize` (full-size v3/v4
## models, GBs each) one process per module, so memory is returned between them.
FULLSIZE_TESTS = $(shell grep -rl --include='test_*.py' 'pytest.mark.fullsize' tests | sort)

test: install-dev
	$(BIN)/python -m pytest -m "not fullsize" tests/api
	$(BIN)/python -m pytest -m "not fullsize" --ignore=tests/api
	@for module in $(FULLSIZE_TESTS); do \
		echo "== $$module (own process)"; $(BIN)/python -m pytest -m fullsize $$module || exit 1; \
	done

lint: install-dev
	$(BIN)/ruff check app tests benchmarks

conformance: install-dev
	$(BIN)/python -m pytest -m conformance

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
