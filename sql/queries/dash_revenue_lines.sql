-- Every line of every issued document, signed: invoices count positive, credit notes
-- negative. amount: EUR excl. VAT, DECIMAL(18,2), as printed; gpu_hours as printed.
-- site is set only when the line's site was priced apart.
SELECT d.period AS month, d.number, d.kind, d.tenant, d.issue_date, l.line_no,
       l.gpu_model, l.mig_profile, l.site,
       CASE WHEN d.kind = 'credit_note' THEN -l.gpu_hours ELSE l.gpu_hours END AS gpu_hours,
       CASE WHEN d.kind = 'credit_note' THEN -l.amount ELSE l.amount END AS amount
FROM billing_documents AS d
JOIN billing_document_lines AS l USING (number)
ORDER BY d.period, d.tenant, d.number, l.line_no;
