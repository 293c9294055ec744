-- Append staged entries (registered as audit_staged_entries) to the log.
INSERT INTO audit_entries (idx, entry, entry_type, month, tenant, subject, appended_at)
SELECT idx, entry, entry_type, month, tenant, subject, appended_at
FROM audit_staged_entries;
