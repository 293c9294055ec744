# gpumeter — two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-uv/bin/uv)
PY := .venv/bin/python
APT_PKGS := prometheus victoria-metrics chromium

.PHONY: env demo test smoke-313 lint bench sysdeps clean

# uv itself comes from PyPI when the machine lacks it.
.venv-uv/bin/uv:
	python3 -m venv .venv-uv && .venv-uv/bin/pip install -q uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups
	touch $@

env: .venv/.synced

demo: env
	.venv/bin/gpumeter demo

# Debian packages the tests drive for real; CI runs as root.
sysdeps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v victoria-metrics >/dev/null || missing="$$missing victoria-metrics"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

test: env sysdeps
	.venv/bin/pytest -q
	$(MAKE) --no-print-directory smoke-313

# The same lock on Python 3.13, in its own environment: install (gpumeter built as a wheel,
# not editable), `gpumeter demo` in a temporary folder, verify its bundle, then the audit and
# billing unit tests. The interpreter is found by .ci/find-python (or SMOKE_PYTHON=path).
SMOKE_VENV := .venv-313
smoke-313: | $(UV)
	@set -euo pipefail; start=$$(date +%s); \
	py="$$(.ci/find-python 3.13)"; \
	echo "smoke-313: $$py"; \
	UV_PROJECT_ENVIRONMENT=$(SMOKE_VENV) $(UV) sync -q --frozen --all-groups --no-editable \
	  --reinstall-package gpumeter --python "$$py"; \
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && "$(CURDIR)/$(SMOKE_VENV)/bin/gpumeter" demo --out demo >demo.log 2>&1) \
	  || { tail -n 30 "$$tmp/demo.log"; echo "smoke-313: gpumeter demo failed"; exit 1; }; \
	$(SMOKE_VENV)/bin/gpumeter audit verify "$$tmp/demo/audit-2026-10.zip" --key "$$tmp/demo/keys/audit.vkey"; \
	$(SMOKE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/audit tests/billing; \
	echo "smoke-313: passed in $$(( $$(date +%s) - start )) s"

lint: env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bench: env sysdeps
	$(PY) -m bench.metering
	$(PY) -m bench.billing
	$(PY) -m bench.audit
	$(PY) -m bench.dashboards

clean:
	rm -rf .venv .venv-313 .venv-uv var demo-out .pytest_cache .mypy_cache .ruff_cache
