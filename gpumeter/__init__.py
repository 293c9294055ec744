"""gpumeter: GPU metering, EU invoicing and a signed sovereignty audit log.

The top-level package holds what every domain package shares: the error base
(:mod:`gpumeter.errors`), configuration (:mod:`gpumeter.config`), the DuckDB store
(:mod:`gpumeter.store`) and the command line (:mod:`gpumeter.cli`).
"""

__version__ = "0.1.0"
