# Two commands set everything up on a fresh machine: `make test` and `make devnet`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast devnet bench clean system-deps

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,nfc]'
	touch $(STAMP)

# System packages the tests use, installed when missing and the machine lets us (root with apt):
# libfaketime steps a node's clock in the fault tests (they skip without it).
system-deps:
	@command -v faketime >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -qq faketime >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq faketime >/dev/null)); } \
		|| echo "faketime is not installed: the clock-fault tests will skip"

test: $(STAMP) system-deps
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
