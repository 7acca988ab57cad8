# FastDSC-YOLO. On a fresh machine:
#   make demo   - installs the package (no torch needed) and runs detection on a generated clip
#   make test   - installs the development extras (torch CPU) and runs the whole test suite
#   make lint   - ruff, import layers, Python 3.8 compatibility and shellcheck (CI runs it first)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip requirement for PyTorch; on machines without a local CPU wheel you may prefer e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
DEMO := demo-out
DEMO_WEIGHTS := weights/demo-synth-tiny-fastdsc.safetensors

.PHONY: demo test setup setup-dev lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base-installed: $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.base-installed
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

setup: $(VENV)/.base-installed

setup-dev: $(VENV)/.dev-installed

demo: setup
	$(PY) -m detector synth $(DEMO)/data --train 0 --val 0 --size 320 --seed 2026 --clip 150
	$(PY) -m detector detect $(DEMO)/data/clip.mp4 --weights $(DEMO_WEIGHTS) \
		--save $(DEMO)/annotated.mp4 --json $(DEMO)/detections.jsonl \
		--stats-json $(DEMO)/stats.json --quiet
	@echo "annotated video: $(DEMO)/annotated.mp4   detections: $(DEMO)/detections.jsonl"

test: setup-dev
	$(PY) -m pytest -q

# ruff: style and complexity (pyproject.toml); lint-imports: the import layers and no cycles
# (setup.cfg [importlinter]); vermin: Python 3.8 (the Jetson boards); shellcheck: the scripts.
lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/vermin --no-tips --violations --eval-annotations -t=3.8- detector kernels scripts tests
	PATH="$(abspath $(VENV))/bin:$$PATH" shellcheck scripts/*.sh .ci/run

clean:
	rm -rf $(DEMO) .pytest_cache build dist *.egg-info
