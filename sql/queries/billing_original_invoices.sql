-- Per tenant, the original invoice issued for one month (what FOCUS InvoiceId names).
SELECT tenant, number
FROM billing_documents
WHERE period = $period AND kind = 'invoice' AND references_number IS NULL;
