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

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## demo: install, then run the pi example on the default local config
demo: install
	cd examples && ../$(PY) pi.py

## test: install test extras, start the backends the tests need, run the whole suite
test: install-test
	$(PY) -m pytest -q -p no:cacheprovider tests

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
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info examples/runinfo runinfo
