"""The dashboards: Finance, Utilisation, Compliance, Auditor (Access for admins, My account for tenants).

One Streamlit entrypoint (``app.py``, served by ``gpumeter dashboard``) registers with
``st.navigation`` the pages of the signed-in user's role (:mod:`dashboards.roles`); the
page scripts in ``screens/`` only draw what :mod:`dashboards.views` hands them.

=====================  =======================================================================
``views``              each page's data, cached on the data's version (``st.cache_data``)
``finance``            revenue lines, per-site split, unbilled usage (billing's pricing), PDFs
``utilisation``        per-month usage aggregates; held/busy/idle, energy, coverage gaps
``compliance``         verdicts and violation evidence; the audit log against its checkpoint
``exports``            auditor bundles built on download, each one an ``export`` log entry
``account``            My account: one tenant's data, the tenant bound into every query
``exit_package``       ``gpumeter export --tenant``: that data as files, with a manifest
``reader``             short read-only sessions and short writes beside ``collect``; versions
``auth``               users (argon2id), sign-in, refusals recorded and logged
``gate``               one process's sign-in guard: reservations, argon2 bound, refusals in memory
``sessions``           a tab's session: idle time, sign-out, password change; re-checked on use
``ratelimit``          per-name and per-client backoff, the client's address (pure)
``roles``              roles, their pages, who may export what (pure)
``settings``           ``[dashboard]`` of gpumeter.toml; the :class:`~dashboards.settings.Site`
``charts``, ``ui``     Altair charts; tables with CSV download, month pickers, errors
``commands``           ``gpumeter dashboard``, ``gpumeter users add|list|remove``, ``gpumeter export``
``errors``             :class:`~dashboards.errors.DashboardError` and its tree
=====================  =======================================================================

No SQL text and no pricing live in the pages: queries are ``sql/queries/dash_*.sql`` (and ``account_*.sql``),
prices come from billing. Decisions: docs/adr/0006-dashboards.md.
"""
