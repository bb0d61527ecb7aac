# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
# Both create .venv and install what is missing; a second run installs nothing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.timbre-installed
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= ./data
# torch is pinned to the CPU build that lies on this machine's disk; an unpinned torch would
# pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: serve test test-fast install lint typecheck clean compat

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml $(wildcard requirements/*.txt) | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[test,dev,xtts]'
	$(BIN)/python -m pip install -q --no-deps -r requirements/runtime-nodeps.txt
	# reference implementations the tests compare ours against (see the requirements files)
	$(BIN)/python -m pip install -q -r requirements/test-references.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements/test-references-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

# Pipecat and LiveKit Agents, for tests/realtime/test_compat_frameworks.py: a venv of their own
# (pipecat-ai needs protobuf<7, which onnx/onnxruntime in .venv do not accept).
COMPAT_VENV ?= .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.timbre-installed

$(COMPAT_STAMP): requirements/compat.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install -q -r requirements/compat.txt
	touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP)

serve: $(STAMP)
	$(BIN)/timbre serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

test: $(STAMP) $(COMPAT_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check realtime session inference loadtest tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy realtime session inference loadtest

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build *.egg-info
