-- $tenant's latest month (YYYY-MM) with an original invoice issued (NULL: none yet).
SELECT max(period) AS period
FROM billing_documents
WHERE tenant = $tenant AND kind = 'invoice' AND references_number IS NULL;
