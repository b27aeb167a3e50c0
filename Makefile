# Two commands do all set-up on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch is pinned in pyproject.toml (2.13.0, the CPU wheel on this machine's disk).
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/faithwatch demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/ruff check pipelines services alerts dashboards tests
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --doctest-modules pipelines tests

lint: $(STAMP)
	$(VENV)/bin/ruff check pipelines services alerts dashboards tests

clean:
	rm -rf $(VENV) .faithwatch .pytest_cache
