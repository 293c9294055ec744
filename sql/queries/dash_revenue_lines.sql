-- Every line of every issued document, signed: invoices count positive, credit notes
-- negative. amount: EUR excl. VAT, DECIMAL(18,2), as printed; gpu_hours as printed.
-- site is set only when the line's site was priced apart. Promotional credits are revenue
-- given up (document-level allowances, before VAT): one row each, negative on an invoice,
-- positive on the credit note that gives it back, with gpu_model and site naming the credit,
-- so that every breakdown adds up to the documents' nets.
SELECT d.period AS month, d.number, d.kind, d.tenant, d.issue_date, l.line_no,
       l.gpu_model, l.mig_profile, l.site,
       CASE WHEN d.kind = 'credit_note' THEN -l.gpu_hours ELSE l.gpu_hours END AS gpu_hours,
       CASE WHEN d.kind = 'credit_note' THEN -l.amount ELSE l.amount END AS amount
FROM billing_documents AS d
JOIN billing_document_lines AS l USING (number)
UNION ALL
SELECT d.period AS month, d.number, d.kind, d.tenant, d.issue_date, NULL AS line_no,
       '(promotional credit ' || c.credit || ')' AS gpu_model, NULL AS mig_profile,
       '(promotional credit ' || c.credit || ')' AS site,
       NULL AS gpu_hours,
       CASE WHEN d.kind = 'credit_note' THEN c.amount ELSE -c.amount END AS amount
FROM billing_documents AS d
JOIN billing_document_credits AS c USING (number)
WHERE c.role = 'allowance'
ORDER BY month, tenant, number, line_no NULLS LAST, gpu_model;
