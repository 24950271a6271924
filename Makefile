# Two commands matter: `make demo` and `make test`. Everything else is a building block.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: install lint test demo bench ablations clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; torch goes first so that no dependency
# resolves a different build of it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev,export]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/python -m jobs.demo --out $(DEMO_DIR)

bench: install
	@for f in $(filter-out bench/ablations.py,$(wildcard bench/*.py)); do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# about an hour on 2 CPU cores: the miniature of the paper's Tables 3 and 4 (docs/ABLATIONS.md)
ablations: install
	$(BIN)/python bench/ablations.py --out ablations_out --epochs 24 --no-validation --write docs/ABLATIONS.md

clean:
	rm -rf $(DEMO_DIR) ablations_out .pytest_cache build *.egg-info
