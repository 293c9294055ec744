-- The documents issued for one month as billing froze them, for the Stripe sync: the exact
-- JSON bytes and the SHA-256 stored with them; total in EUR incl. VAT (DECIMAL).
SELECT number, kind, tenant, total, json_bytes, json_sha256
FROM billing_documents
WHERE period = $period
ORDER BY number
