-- Every credit row of $tenant's issued documents, with the document's kind and month (the
-- rows billing.credits derives a balance from), and nothing of any other tenant.
SELECT d.number, d.tenant, d.kind, d.period, c.credit, c.role, c.amount
FROM billing_document_credits AS c
JOIN billing_documents AS d USING (number)
WHERE d.tenant = $tenant
ORDER BY d.period, d.series, d.seq, c.credit, c.role;
