# Two commands set everything up on a fresh machine: `make test` and `make devnet`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast devnet bench clean system-deps

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,nfc,research]'
	touch $(STAMP)

# System packages the tests use, installed when missing and the machine lets us (root with apt):
# libfaketime steps a node's clock in the fault tests, Debian's prometheus scrapes a devnet in the
# metrics test, chromium and chromium-driver drive the web app in a real browser (each test skips,
# saying why, when its package is absent).
SYSTEM_PACKAGES := faketime:faketime prometheus:prometheus chromium:chromium chromedriver:chromium-driver
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing:$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null 2>&1 \
			|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
			|| echo "could not install$$missing: the tests that need them will skip"; \
		else echo "not installed:$$missing (needs root and apt-get): the tests that need them will skip"; fi; \
	fi

# The suite in as many workers as cores (at most 4), each test module whole in one worker (its
# module-scoped node shared by its tests); the functional tests mostly wait on 1-second slots.
test: $(STAMP) system-deps
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations=15

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
