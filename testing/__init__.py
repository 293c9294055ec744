"""What the tests and the benchmarks share: real-server runners and store builders.

Not part of the product and not in the wheel; importable when ``pytest`` or
``python -m bench.<name>`` runs from the repository root. ``bench/`` imports this package,
never ``tests/``.

- :mod:`testing.servers`: Prometheus 2.42 and VictoriaMetrics on 127.0.0.1, loaded with series;
- :mod:`testing.proxy`: a fault-injecting HTTP proxy in front of one of them;
- :mod:`testing.stores`: migrated stores, site folders, and rows written straight into the
  metering tables as metering would leave them.
"""
