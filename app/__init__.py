"""The app: the ``gpumeter`` command line, the demo and the long-running services.

The top layer. It mounts each domain's ``typer.Typer`` (metering, audit, billing,
dashboards), wires one domain's events to another's reactions (:mod:`app.reactions`: a
``collect`` is logged in the audit log and decides budget alerts; ``usage --format focus``
is billing's FOCUS export), and owns what spans
domains (``init`` creates the store and the audit key; ``demo`` runs the whole chain).
Nothing below imports it.
"""
