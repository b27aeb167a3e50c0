# Two commands do all set-up on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean bench

$(STAMP): pyproject.toml clients/python/pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch is pinned in pyproject.toml (2.13.0, the CPU wheel on this machine's disk).
	$(PIP) install --quiet -e '.[dev]'
	# The Python client (its own package, docs/ingest.md), for tests/clients.
	$(PIP) install --quiet -e clients/python
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/faithwatch demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/ruff check pipelines services alerts dashboards tests benchmarks clients
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --doctest-modules pipelines services alerts tests clients/python/src

# Benchmarks (not part of CI): each script writes benchmarks/results/NAME.md, then BENCHMARKS.md is rebuilt.
BENCHES ?= $(basename $(notdir $(wildcard benchmarks/bench_*.py)))
bench: $(STAMP)
	for b in $(BENCHES); do HF_HUB_OFFLINE=1 $(PY) -m benchmarks.$$b || exit 1; done
	$(PY) -m benchmarks.report

lint: $(STAMP)
	$(VENV)/bin/ruff check pipelines services alerts dashboards tests benchmarks clients

clean:
	rm -rf $(VENV) .faithwatch .pytest_cache
