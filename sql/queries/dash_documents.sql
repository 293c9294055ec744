-- Issued invoices and credit notes (one month's, or all when $month is NULL), newest
-- period first. Money: EUR DECIMAL(18,2); net excl. VAT, total incl. VAT. finalized_at: UTC.
SELECT number, kind, tenant, period, issue_date, due_date, references_number,
       net, vat_treatment, vat_rate, vat, total, finalized_at
FROM billing_documents
WHERE $month::VARCHAR IS NULL OR period = $month
ORDER BY period DESC, kind = 'credit_note', year, seq;
