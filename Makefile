# Every target creates or reuses .venv and installs the project into it first,
# so on a fresh machine `make demo` and `make test` are the only set-up commands.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The CPU build of torch 2.13.0 (a local wheel on our machines, see README).
TORCH   ?= torch==2.13.0

.PHONY: demo test figures bench bench-trl lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/paced demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 tests

figures: $(STAMP)
	$(BIN)/python -m paper_figures.make_all

bench: $(STAMP)
	for f in bench/*_bench.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs paper_figures/out .pytest_cache

# bench/vs_trl.py needs TRL: the optional extra `trl`, which the dev extra (installed above)
# includes.
bench-trl: $(STAMP)
	$(BIN)/python bench/vs_trl.py
