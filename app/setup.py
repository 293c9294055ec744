"""``gpumeter init``: the store and the audit signing key of a site.

It spans two domains (the store every package uses, the audit log's key), so it lives in
the app. The passphrase of the key is read here, from ``GPUMETER_AUDIT_PASSPHRASE``.
"""

from __future__ import annotations

import os

from audit import keys as audit_keys
from gpumeter import store
from gpumeter.commandline import ConfigOpt, get_config, say


def init(config: ConfigOpt = None) -> None:
    """Create the database (apply sql/ migrations) and, if absent, the audit signing key."""
    cfg = get_config(config)
    con = store.connect(cfg.store.database, wait_s=cfg.store.write_wait_s)
    try:
        applied = store.migrate(con)
    finally:
        con.close()
    say(
        f"database {cfg.store.database}: "
        + (f"applied migrations {', '.join(str(v) for v in applied)}" if applied else "schema up to date")
    )
    if cfg.audit.signing_key.exists():
        say(f"signing key {cfg.audit.signing_key}: present")
        return
    passphrase = os.environ.get(audit_keys.PASSPHRASE_ENV)
    if not passphrase:
        say(
            f"warning: no signing key at {cfg.audit.signing_key} and {audit_keys.PASSPHRASE_ENV} is not set; "
            "set it and run `gpumeter init` again to create the key"
        )
        return
    vkey = audit_keys.ensure_key(cfg.audit.signing_key, passphrase, cfg.audit.origin)
    say(f"signing key {cfg.audit.signing_key}: created; verifier key {vkey}")
