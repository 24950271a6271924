# Two commands matter: `make demo` and `make test`. Everything else is a building block.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: install install-mmdet lint browser test demo bench ablations clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; torch goes first so that no dependency
# resolves a different build of it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev,export]"
	touch $(STAMP)

# The MMDetection teacher (jobs/pseudo_masks.py --backend mmdet): mmengine, mmdet and mmcv with its
# compiled ops. mmcv is compiled once per machine (about 12 minutes on 2 cores) and its wheel kept in
# ~/.cache/vloss/wheels (VLOSS_WHEEL_CACHE), keyed by Python, torch and mmcv: later runs take seconds.
install-mmdet: $(VENV)/.mmdet-installed

$(VENV)/.mmdet-installed: $(STAMP) tools/install_mmdet.py
	$(BIN)/python tools/install_mmdet.py
	touch $@

lint: install
	$(BIN)/ruff check .

# Chromium for the demo page's browser test (tests/pipelines/demo/test_page_browser.py), from the
# system's packages: installed with apt-get where we are root (CI), otherwise a line saying how
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the page test"; \
	    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "could not install chromium: the page test is skipped"; \
	  else echo "no chromium: install the system's chromium package to run the page test (it is skipped)"; fi

# mmcv compiles in the background while the other tests run (tools/test.sh), then the MMDetection tests
test: lint browser
	tools/test.sh $(PYTEST_ARGS)

demo: install
	$(BIN)/python -m jobs.demo --out $(DEMO_DIR)

bench: install
	@for f in $(filter-out bench/ablations.py,$(wildcard bench/*.py)); do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# about an hour on 2 CPU cores: the miniature of the paper's Tables 3 and 4 (docs/ABLATIONS.md)
ablations: install
	$(BIN)/python bench/ablations.py --out ablations_out --epochs 24 --no-validation --write docs/ABLATIONS.md

clean:
	rm -rf $(DEMO_DIR) ablations_out .pytest_cache build *.egg-info
