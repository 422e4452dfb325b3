# Two entry points for a fresh Debian/Ubuntu machine:
#   make demo   virtual factory -> gateway -> store -> verification report
#   make test   the test suite against real Mosquitto, asyncua and pymodbus servers
# Both create .venv and install what they need (apt packages with sudo when not root).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_ARGS ?= --history-days 7 --duration 60

.PHONY: demo test setup setup-test system-packages test-packages bench lock clean

# Every install (make, .ci/run, deploy/install.sh) takes its versions from these lock files, so
# each edge box and CI run the same numpy, asyncua, pymodbus... as the tests did. `make lock`
# re-resolves them deliberately (then run `make test` and commit the result).
LOCK      := requirements.lock
TEST_LOCK := requirements-test.lock

demo: setup
	$(VENV)/bin/shangyun demo $(DEMO_ARGS)

test: setup-test
	$(PY) -m pytest -q

bench: setup-test
	$(PY) tests/bench/bench_store.py
	$(PY) tests/bench/bench_verify.py
	$(PY) tests/bench/bench_gateway.py
	$(PY) tests/bench/bench_config.py
	$(PY) tests/bench/bench_opcua.py

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

# The dashboard test drives Debian's Chromium headless (no browser download: the network is closed);
# the sink tests write to VictoriaMetrics (it speaks InfluxDB's v2 write API); Mosquitto's own
# mosquitto_pub plays an MQTT machine (tests/connectors/test_mqtt_mosquitto_pub.py); the OPC UA
# tests also run against node-opcua's server (tests/peers/node-opcua, versions from its lock file).
test-packages: system-packages
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing with apt: chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	@[ -x /usr/bin/victoria-metrics ] || { \
	  echo "installing with apt: victoria-metrics"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq victoria-metrics; }
	@# Modbus: socat makes virtual serial pairs for the RTU tests; node runs modbus-serial, a Modbus
	@# server this project did not write (tests/peers/modbus-serial, versions from its lock file).
	@missing=""; command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi
	npm ci --silent --no-audit --no-fund --ignore-scripts --prefix tests/peers/modbus-serial
	@command -v mosquitto_pub >/dev/null 2>&1 || { \
	  echo "installing with apt: mosquitto-clients"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq mosquitto-clients; }
	npm ci --silent --no-audit --no-fund --ignore-scripts --prefix tests/peers/node-opcua
	@# Sparkplug B: Eclipse Tahu's encoder (sparkplug-payload) and mqtt.js as an edge node (tests/peers/sparkplug).
	npm ci --silent --no-audit --no-fund --ignore-scripts --prefix tests/peers/sparkplug

$(VENV)/.installed: pyproject.toml $(LOCK) | system-packages
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed $(TEST_LOCK)
	$(PY) -m pip install -q -c $(TEST_LOCK) -e '.[test]'
	touch $@

lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q pip-tools
	.venv-lock/bin/pip-compile -q --upgrade --strip-extras --no-emit-index-url --no-emit-find-links \
	  -o $(LOCK) pyproject.toml
	.venv-lock/bin/pip-compile -q --upgrade --strip-extras --no-emit-index-url --no-emit-find-links \
	  --extra test -o $(TEST_LOCK) pyproject.toml
	@echo "lock files updated: run make test, then commit $(LOCK) $(TEST_LOCK)"

setup: system-packages $(VENV)/.installed

setup-test: test-packages $(VENV)/.installed-test

clean:
	rm -rf $(VENV) .venv-lock demo-out .pytest_cache
