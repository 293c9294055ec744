"""Registers every command on :data:`gpumeter.cli.app`.

Each domain package keeps its commands in its own ``commands`` module, which imports
``app`` from :mod:`gpumeter.cli` and decorates functions on it; importing the module is
what registers them.
"""

from __future__ import annotations

import importlib

# Order is the order of ``gpumeter --help``.
_MODULES = (
    "metering.commands",
    "billing.commands",
    "audit.commands",
    "dashboards.commands",
    "gpumeter.demo",
)

for _name in _MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a package whose commands have not landed yet
        if exc.name != _name:
            raise
