"""Metering: DCGM telemetry in a Prometheus-compatible engine -> exact per-job GPU-seconds.

The rules are pure (:mod:`metering.semantics`, :mod:`metering.windows`, :mod:`metering.mig`);
the Prometheus edge is :mod:`metering.prom`; :mod:`metering.collector` and
:mod:`metering.run` meter a range into the store (:mod:`metering.usage_store`), and
:mod:`metering.report` reads it back. Above the core only: metering imports no other domain.
"""
