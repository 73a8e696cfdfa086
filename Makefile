# Two commands do all the set-up: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/evoreg: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/evoreg

demo: $(BIN)/evoreg
	$(BIN)/python examples/demo.py

test: $(BIN)/evoreg
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(BIN)/evoreg
	$(BIN)/python benchmarks/ask_tell_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
