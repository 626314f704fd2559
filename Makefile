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

.PHONY: demo test lint bench clean setup lock smoke-wheel test-lowest

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

# requirements.lock is generated, never edited: pyproject.toml's dependencies, every extra but boost
# (whose plain xgboost pulls a CUDA NCCL wheel on Linux) and scripts/lock.in (torch 2.13.0; xgboost-cpu
# for boost), resolved by uv for CPython 3.11 on Linux x86-64 (CI and development), keeping the current
# pins where they still fit. torch's CPU build comes from TORCH_WHEELS (PyTorch's CPU wheel page; a
# folder of wheels works too); the sed drops its local tag "+cpu", so the lock's torch==2.13.0 is met by
# the CPU build the setup installs first, and no CUDA package (nvidia-*, triton) enters the lock.
TORCH_WHEELS ?= https://download.pytorch.org/whl/cpu/torch/
LOCK_FLAGS := pyproject.toml scripts/lock.in --extra tune --extra tensorboard --extra analyze --extra seurat-v3 \
	--extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 --annotation-style line -o requirements.lock
lock: $(STAMP)
	UV_CUSTOM_COMPILE_COMMAND='make lock  = uv pip compile $(LOCK_FLAGS) --find-links TORCH_WHEELS, then the "+cpu" tag dropped from torch' \
		$(VENV)/bin/uv pip compile $(LOCK_FLAGS) --find-links $(TORCH_WHEELS)
	sed -i 's/^torch==\(.*\)+cpu/torch==\1    /' requirements.lock
	! grep -qE '^(nvidia-|triton|cuda-)' requirements.lock

# The built wheel in a fresh venv, then every verb on synthetic data: with the newest releases the
# ranges in pyproject.toml allow (.ci/run, after make test), and with each at its lower bound.
smoke-wheel: $(STAMP)
	scripts/smoke_wheel.sh newest

test-lowest: $(STAMP)
	scripts/smoke_wheel.sh lowest

# Every CPU benchmark against its standard recipe (about 20 minutes on 2 cores): one JSON per benchmark and
# the machine's description in bench/results/, then the README's performance table regenerated from them.
bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .cache runs
