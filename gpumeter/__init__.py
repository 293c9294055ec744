"""gpumeter: GPU metering, EU invoicing and a signed sovereignty audit log.

The core, the lowest layer: what every domain package shares. The error base
(:mod:`gpumeter.errors`), configuration (:mod:`gpumeter.config`), the DuckDB store
(:mod:`gpumeter.store`), calendar months (:mod:`gpumeter.months`), countries and
sovereignty sets, and the vocabulary the domains' commands share
(:mod:`gpumeter.commandline`). It imports no domain; the app (:mod:`app`) mounts the
domains' commands.
"""

__version__ = "0.1.0"
