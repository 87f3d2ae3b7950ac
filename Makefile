# parsl_lite: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
BENCH_VENV ?= .venv-bench
BPY     = $(BENCH_VENV)/bin/python
PIP_FLAGS = --disable-pip-version-check -q

.PHONY: demo test install install-test bench bench-install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e .
	touch $@

# Tests drive Debian's Chromium (the web view) and Parsl's own parsl-visualize, which lives in a venv of its
# own (PARSL_VENV) so that the parsl package never shadows anything in ours.
PARSL_VENV ?= .venv-parsl
PARSL_VERSION ?= 2026.10.26

$(VENV)/.installed-test: $(VENV)/.installed setup.cfg
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

$(PARSL_VENV)/.installed:
	$(PYTHON) -m venv $(PARSL_VENV)
	$(PARSL_VENV)/bin/pip install $(PIP_FLAGS) 'parsl[monitoring,visualization]==$(PARSL_VERSION)'
	touch $@

/usr/bin/chromium:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test $(PARSL_VENV)/.installed /usr/bin/chromium

## demo: install, then run the pi example on the local config (configs/local.toml: worker processes through htex)
demo: install
	cd examples && ../$(PY) pi.py ../configs/local.toml

# The test backends (../shared/backends): NAME:ENV of each, as tests/conftest.py's BACKENDS wants them.
# `make test` starts those not up, each `up` under its own timeout (a fresh machine installs packages and
# unpacks Kubernetes), before pytest and so outside the 60 s per-test timeout; it stops the ones it started
# at the end. A backend that cannot start fails its tests (PLITE_REQUIRE_BACKENDS=1), it does not skip them.
BACKENDS_DIR ?= ../shared/backends
BACKEND_UPS = slurm:PLITE_SLURM_CPUS=8 ssh:WITH_H2=1 k8s:WITH_NODE=1 postgres:PLITE_PG_PORT=5433 rabbitmq:PLITE_RMQ_PORT=5673
BACKEND_UP_TIMEOUT ?= 900
KEEP_BACKENDS ?= 0
PYTEST_ARGS ?=

## test: install test extras, start the backends the tests need, run the whole suite
## (pytest's exit code is make's: 5, no test collected, fails too)
test: install-test
	@started=""; \
	for spec in $(BACKEND_UPS); do \
	  name=$${spec%%:*}; vars=$${spec#*:}; \
	  if env $$vars bash $(BACKENDS_DIR)/$$name.sh status >/dev/null 2>&1; then continue; fi; \
	  echo "make test: starting the $$name backend (timeout $(BACKEND_UP_TIMEOUT) s)"; \
	  if env $$vars timeout $(BACKEND_UP_TIMEOUT) bash $(BACKENDS_DIR)/$$name.sh up >/dev/null; then \
	    started="$$name $$started"; \
	  else echo "make test: the $$name backend did not start; its tests will fail"; fi; \
	done; \
	rc=0; PLITE_REQUIRE_BACKENDS=1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests || rc=$$?; \
	if [ "$(KEEP_BACKENDS)" != 1 ]; then \
	  for name in $$started; do bash $(BACKENDS_DIR)/$$name.sh down >/dev/null 2>&1 || true; done; \
	fi; \
	if [ $$rc = 5 ]; then echo "make test: pytest collected no tests"; fi; \
	exit $$rc

$(BENCH_VENV)/.installed: setup.cfg benchmarks/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BPY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(BPY) -m pip install $(PIP_FLAGS) -r benchmarks/requirements.txt -e .
	touch $@

bench-install: $(BENCH_VENV)/.installed

## bench: run every benchmark side by side with the peers and regenerate benchmarks/RESULTS.md
bench: bench-install
	$(BPY) -m benchmarks run all --executor threads
	$(BPY) -m benchmarks run all --executor htex
	$(BPY) -m benchmarks report

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(PARSL_VENV) build *.egg-info examples/runinfo runinfo
