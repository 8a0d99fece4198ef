PYTHON ?= python
PIP ?= $(PYTHON) -m pip
# CPU wheel (the local one on the dev machines). If a CUDA torch is already installed, it is left alone.
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-gpu test test-all bench bench-quick oracle-fixtures clean

install:
	@$(PYTHON) -c "import torch" 2>/dev/null && echo "torch already installed: keeping it" || $(PIP) install $(TORCH_CPU)
	$(PIP) install -e ".[dev,mss]"

install-gpu:
	$(PIP) install torch
	$(PIP) install -e ".[dev,mss]"

test:
	$(PYTHON) -m pytest

test-all:
	$(PYTHON) -m pytest -m "" 

bench:
	$(PYTHON) experiments/benchmark_losses.py --json experiments/results/benchmark_losses.json

bench-quick:
	$(PYTHON) experiments/benchmark_losses.py --quick

# Regenerates the float64 golden JTFS fixtures from the authors' scrapl-loss wheel, in a separate venv.
oracle-fixtures:
	$(PYTHON) -m venv .oracle-venv
	.oracle-venv/bin/pip install $(TORCH_CPU) scrapl-loss==0.1.0
	.oracle-venv/bin/python tests/fixtures/make_jtfs_fixtures.py

clean:
	rm -rf .pytest_cache build *.egg-info src/*.egg-info outputs multirun
