PYTHON ?= python
PIP ?= $(PYTHON) -m pip
# CPU wheel (the local one on the dev machines). If a CUDA torch is already installed, it is left alone.
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-gpu test test-all bench bench-quick oracle-fixtures drums clean

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
	.oracle-venv/bin/pip install $(TORCH_CPU) scrapl-loss==0.1.0 auraloss  # auraloss: experiments/compare_kymatio_jtfs.py
	.oracle-venv/bin/python tests/fixtures/make_jtfs_fixtures.py

# Real drum one-shots (Debian package hydrogen-drumkits, 14 kits, ~140 MB): data/drums/{train,val,test}/<kit>/,
# split by kit (scraplab.data.drums.KIT_SPLITS), with data/drums/filelist.csv and the kits' licences. Never committed.
DRUMS_BUILD ?= build/drums
drums:
	rm -rf $(DRUMS_BUILD) && mkdir -p $(DRUMS_BUILD)
	cd $(DRUMS_BUILD) && apt-get download hydrogen-drumkits
	dpkg-deb -x $(DRUMS_BUILD)/hydrogen-drumkits_*.deb $(DRUMS_BUILD)/x
	$(PYTHON) -m scraplab.data.drums --kits $(DRUMS_BUILD)/x/usr/share/hydrogen/data/drumkits --out data/drums \
		--licence $(DRUMS_BUILD)/x/usr/share/doc/hydrogen-drumkits/copyright

clean:
	rm -rf .pytest_cache build *.egg-info src/*.egg-info outputs multirun
