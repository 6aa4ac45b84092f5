# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test clean

$(BIN)/triage: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so pip takes the CPU wheel and never resolves a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/triage

install: $(BIN)/triage

demo: install
	$(BIN)/triage demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d "$$(mktemp -d)"
	# The flow tests (Prefect harness, real servers, S3) apart from the plain-Python ones, which run on two
	# pytest-xdist workers (one per core of the CI machine), each taking whole test files.
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --ignore=tests/flows
	$(BIN)/python -m pytest -q tests/flows

clean:
	rm -rf $(VENV) data/demo
