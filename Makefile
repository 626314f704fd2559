# Two entry points: `make demo` and `make test`. Both create/refresh .venv and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.biofm-installed
# Datasets come from their public sources (biofm data list); a mirror folder beside the checkout, when
# there is one, serves them offline. A mirror set by the caller wins.
MIRROR := $(abspath ../shared/data)
ifneq ($(wildcard $(MIRROR)),)
export BIOFM_DATA_MIRROR ?= $(MIRROR)
endif

.PHONY: demo test lint bench clean setup

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: a bare torch requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/biofm demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

test: $(STAMP) lint
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) bench/tokenize.py

clean:
	rm -rf $(VENV) .cache runs
