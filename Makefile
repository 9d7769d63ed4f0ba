# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Set-up is idempotent: Debian packages (ngspice, shared lib, Fashion-MNIST) when missing, a .venv,
# torch pinned to the CPU build first, then thermotrain with its dev extras.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
OUT ?= runs/demo
APT_PKGS := ngspice libngspice0 libngspice0-dev dataset-fashion-mnist
# optional: a headless browser for the test that opens report.html (it skips, with the reason, without one)
OPTIONAL_APT_PKGS := chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SUDO_N := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: setup system venv optional demo test test-all lint docs bench clean

setup: system venv optional

system:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo ">> installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(BIN)/.installed

# Best effort, tried once per .venv (never prompts for a password, never fails the set-up).
optional: $(BIN)/.optional-tried

$(BIN)/.optional-tried: | $(BIN)/.installed
	@for p in $(OPTIONAL_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 && continue; \
	  echo ">> installing optional Debian package $$p (best effort)"; \
	  { DEBIAN_FRONTEND=noninteractive timeout 900 $(SUDO_N) apt-get install -y -qq --no-install-recommends $$p \
	    || { $(SUDO_N) apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 $(SUDO_N) apt-get install \
	         -y -qq --no-install-recommends $$p; }; } >/dev/null 2>&1 \
	  || echo ">> $$p not installed (optional; the headless-browser test of report.html skips)"; \
	done; touch $@

$(BIN)/.installed: pyproject.toml constraints.txt
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	@echo ">> installing torch (CPU build, pinned) and thermotrain[dev] into $(VENV)"
	@$(PIP) install --upgrade pip setuptools wheel -c constraints.txt
	@$(PIP) install -c constraints.txt torch==2.13.0
	@$(PIP) install -c constraints.txt -e ".[dev]"
	@touch $@

demo: setup
	$(BIN)/thermotrain demo --out $(OUT)

test: setup
	$(BIN)/python -m pytest -m "not slow" -q

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# the docs site, offline (no web fonts or scripts), API pages from the docstrings: runs/site/index.html
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: setup
	$(PIP) install -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python benchmarks/spice_scaling.py --out runs/bench

clean:
	rm -rf runs .pytest_cache
