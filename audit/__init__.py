"""The sovereignty audit log: an RFC 6962 Merkle log of canonical JSON entries, signed
C2SP checkpoints, and auditor bundles that verify offline (docs/adr/0004-audit-log.md).

Pure core (no I/O, no clock):

==================  ==========================================================================
``canonical``       RFC 8785 entry bytes; ``check_entry`` / ``verify_entry``; ``parse_entry``
``merkle``          RFC 6962 hashing, ``Frontier``, ``MerkleTree``, proof plans, verification
``tiles``           C2SP tlog-tiles: paths, layout, ``grow`` (appending), ``TileHashes``, bundles
``note``            C2SP signed notes: parse/format, vkeys, key IDs, ``Signer``, ``open_note``
``checkpoint``      tlog-checkpoint bodies; ``open_checkpoint`` (origin, log signature, cosigners)
``proof``           ``c2sp.org/tlog-proof@v1`` files: format, parse, verify (under a ``Trust``); ``ProofTree``
``policy``          named, versioned boundaries; ``check_job`` / ``verify_job``
``trust``           C2SP tlog-policy: ``parse_policy``, ``build_policy``, ``check_checkpoint``; the quorum rule
``entries``         the entry kinds as JSON objects; index columns (``meta``)
``report``          ``policy.json``, ``report/sovereignty.csv``, ``summary.md``, ``VERIFY.md``
``errors``          ``AuditError`` and its tree
==================  ==========================================================================

I/O edge:

==================  ==========================================================================
``keys``            encrypted signing key (0600), key ring, rotation, ``ensure_key``
``log``             ``AuditLog`` over DuckDB (entries, tiles): append, proofs, checkpoints
``check``           ``check_log`` / ``verify_log`` (``gpumeter audit check``)
``record``          ``record_*`` helpers other packages call; metering's ``after_collect`` hook
``attest``          usage windows, inventory versions, job attestations from the store
``bundle``          ``export_bundle`` (``gpumeter audit export``)
``publish``         ``publish`` (``gpumeter audit publish``): static tlog-tiles; ``check_published``
``archive``         bounded, checked, batched reading of a bundle zip (``BundleReader``)
``zipformat``       the zip format's records as ``archive`` reads them (end records, directory)
``verify``          ``verify_bundle`` / ``check_bundle`` (``gpumeter audit verify``)
``verify_entries``  the verifier's streaming read of the entries, and the report checked against them
``pinning``         what verify trusts: ``Trust``, ``PolicyTrust`` (a tlog-policy + a pinned TSA)
``seal``            a committed checkpoint time-stamped and cosigned (``checkpoint``, ``export``)
``gcpause``         pausing the cyclic garbage collector while a batch builds many objects
``highwater``       the largest checkpoint ever signed, beside the key: no fork after a restore
``cosign``          submitting checkpoints to witnesses, their cosignatures; ``cosigned_note``
``timestamp``       RFC 3161 tokens of checkpoints; ``verify_timestamp`` against a pinned TSA
``witness``         a C2SP tlog-witness: its folder, state and ``add-checkpoint`` rules
``witness_http``    that witness over HTTP, bounded (body, time, concurrent handlers)
``commands``        the ``gpumeter audit`` CLI; ``witness_commands``: ``gpumeter witness``
==================  ==========================================================================
"""
