# Two entry points for a fresh Debian/Ubuntu machine:
#   make demo   virtual factory -> gateway -> store -> verification report
#   make test   the test suite against real Mosquitto, asyncua and pymodbus servers
# Both create .venv and install what they need (apt packages with sudo when not root).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_ARGS ?= --history-days 7 --duration 60

.PHONY: demo test setup setup-test system-packages test-packages bench clean

demo: setup
	$(VENV)/bin/shangyun demo $(DEMO_ARGS)

test: setup-test
	$(PY) -m pytest -q

bench: setup-test
	$(PY) tests/bench/bench_store.py
	$(PY) tests/bench/bench_verify.py
	$(PY) tests/bench/bench_gateway.py

system-packages:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "shangyun needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1 | head -1)." \
	       "Install one and run e.g.: make demo PYTHON=python3.11" >&2; exit 1; }
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	$(PYTHON) -c "import venv, ensurepip" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The dashboard test drives Debian's Chromium headless (no browser download: the network is closed).
test-packages: system-packages
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing with apt: chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

$(VENV)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: system-packages $(VENV)/.installed

setup-test: test-packages $(VENV)/.installed-test

clean:
	rm -rf $(VENV) demo-out .pytest_cache
