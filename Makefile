# Two commands set everything up on a fresh machine: `make test` and `make devnet`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast devnet bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,nfc]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

devnet: $(STAMP)
	$(VENV)/bin/transx devnet

bench: $(STAMP)
	$(PY) bench/clearing.py
	$(PY) bench/chain.py
	$(PY) bench/consensus_sim.py --quick
	$(PY) bench/consensus_scale.py
	$(PY) bench/network.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
