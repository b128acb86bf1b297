# idc-ha: the two Quick start commands are `make demo` and `make test` (Debian 12, as root).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEB_PKGS := mariadb-server mosquitto etcd-server nftables iproute2 python3-venv
PYTEST_ARGS ?=
ACCEPTANCE ?= $(firstword $(wildcard ../shared/acceptance/run-idc-failover /work/shared/acceptance/run-idc-failover))

.PHONY: help deps debs venv sweep test unit integration chaos acceptance demo bench lint clean

help:
	@echo "make test        install what is missing, then run every test (unit + real-lab integration)"
	@echo "make demo        bring up the lab, run the daemon, fail IDC1 over, print the report"
	@echo "make acceptance  the independent acceptance check (../shared/acceptance/run-idc-failover)"
	@echo "make bench       failover benchmark, 5 trials, JSON"
	@echo "make lint        ruff + mypy"

deps: debs venv

# System packages, installed only when missing. A policy-rc.d keeps apt from starting services:
# the lab starts its own servers and must never touch the machine's own.
debs:
	@missing=""; \
	for c in mariadbd:mariadb-server mariadb-install-db:mariadb-server mosquitto:mosquitto etcd:etcd-server nft:nftables ip:iproute2; do \
	  cmd=$${c%%:*}; pkg=$${c##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	$(PY) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  created=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created=1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$(echo $$missing | tr ' ' '\n' | sort -u) >/dev/null; rc=$$?; \
	  [ -n "$$created" ] && rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

venv: $(VPY)
	@$(VPY) -m pip install -q -e '.[dev]'

# Remove namespaces and bridges left by labs whose supervisor is gone (never a live lab).
sweep: venv
	@$(VPY) -m sim.lab sweep >/dev/null

unit: venv
	$(VPY) -m pytest tests/unit -q $(PYTEST_ARGS)

integration: deps sweep
	$(VPY) -m pytest tests/integration -q -m "not chaos" $(PYTEST_ARGS)

test: deps sweep
	$(VPY) -m pytest tests -q -m "not chaos" $(PYTEST_ARGS)

chaos: deps sweep
	$(VPY) -m pytest tests -q -m chaos $(PYTEST_ARGS)

acceptance: deps sweep
	@[ -n "$(ACCEPTANCE)" ] || { echo "acceptance check not found (../shared/acceptance/run-idc-failover); set ACCEPTANCE=path"; exit 1; }
	source $(VENV)/bin/activate && bash $(ACCEPTANCE)

demo: deps sweep
	$(VPY) -m sim.demo

bench: deps sweep
	$(VPY) -m sim.bench failover --trials 5 --json

lint: venv
	$(VPY) -m ruff check idc_ha sim tests
	$(VPY) -m mypy idc_ha

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
