# gpumeter — two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-uv/bin/uv)
PY := .venv/bin/python
APT_PKGS := prometheus victoria-metrics chromium

.PHONY: env demo test lint bench sysdeps clean

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
	rm -rf .venv .venv-uv var demo-out .pytest_cache .mypy_cache .ruff_cache
