# vaekit: `make demo` trains the seed model, `make test` runs the suite.
# Both create .venv if missing and install the pinned CPU PyTorch first:
# an unpinned `torch` would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN = $(VENV)/bin

# Use the shared data folder next to the checkout when there is one and the
# user has not pointed VAEKIT_DATA_DIR elsewhere.
ifeq ($(VAEKIT_DATA_DIR),)
ifneq ($(wildcard ../shared/data/fashion-mnist),)
export VAEKIT_DATA_DIR := $(abspath ../shared/data)
endif
endif

.PHONY: setup demo test docs bench pretrained clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: setup
	$(BIN)/vaekit demo

test: setup
	$(BIN)/python -m pytest -n auto --durations=15

# The documentation site: the guides and the API reference; any warning fails the build.
docs: setup
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs build/docs
	@echo "docs: build/docs/index.html"

# Retrain the shipped models (src/vaekit/zoo/weights/) from scratch, resumably: 1.5-3.5 h each on 2 CPU cores (card.json train_seconds).
# JOBS=2 trains two at a time (benchmarks/parallel_runs.py says what pays on this machine).
JOBS ?= 1
pretrained: setup
	$(BIN)/python scripts/build_pretrained.py --jobs $(JOBS)

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
