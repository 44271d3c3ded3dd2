# One command each: `make book` builds the book, `make test` runs the tests.
# Both create the virtual environment (.venv) from pyproject.toml's pins on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= converged
# The study's data: $DEFECTLIB_DATA, else ../shared/data when it exists, else ./data.
export DEFECTLIB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))

.PHONY: env book grid status test test-fast lab clean

env: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

## Execute every notebook in _toc.yml with papermill (profile $(PROFILE)) and build the book
## into _build/html/index.html.
book: env
	$(BIN)/defectlib book --profile $(PROFILE)

## Compute every missing cell of the profile in the background (two workers, one thread each,
## each fold checkpointed and resumed); `make status` shows what is done and left.
grid: env
	$(BIN)/defectlib grid start --profile $(PROFILE)

status: env
	$(BIN)/defectlib grid status --profile $(PROFILE)

## Unit tests, then every notebook through papermill with the smoke profile and a book build;
## two processes of one thread each (pytest-xdist), so both cores work; an idle one takes
## pending tests from the other (worksteal), so the long book test does not hold a queue.
TEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist worksteal
test: env
	$(TEST)

## Unit tests only (no notebooks).
test-fast: env
	$(TEST) -m "not slow"

## Open the notebooks in JupyterLab.
lab: env
	$(BIN)/jupyter lab book/

clean:
	rm -rf _build
