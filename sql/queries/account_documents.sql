-- One tenant's issued invoices and credit notes (of $month, or every month when NULL),
-- newest period first. Money: EUR DECIMAL(18,2); net excl. VAT, total incl. VAT.
-- finalized_at: UTC.
SELECT number, kind, tenant, period, issue_date, due_date, references_number,
       net, vat_treatment, vat_rate, vat, total, finalized_at
FROM billing_documents
WHERE tenant = $tenant
  AND ($month::VARCHAR IS NULL OR period = $month)
ORDER BY period DESC, kind = 'credit_note', year, seq;
