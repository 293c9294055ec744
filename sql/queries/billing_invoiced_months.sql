-- Per tenant, the latest month (YYYY-MM) with an original invoice issued: a credit whose last
-- month is that one or earlier can no longer be drawn (billing.credits).
SELECT tenant, max(period) AS period
FROM billing_documents
WHERE kind = 'invoice' AND references_number IS NULL
GROUP BY tenant
ORDER BY tenant;
