-- Every document issued for one month, in issue order (series, then number). paid: EUR of
-- prepaid credits the document drew (a credit note: gave back); 0 without credits.
SELECT d.number, d.kind, d.type_code, d.tenant, d.period, d.issue_date, d.due_date,
       d.references_number, d.references_date, d.net, d.vat_treatment, d.vat_rate, d.vat, d.total,
       d.json_sha256, d.pdf_sha256, d.xml_sha256,
       coalesce((SELECT sum(c.amount) FROM billing_document_credits AS c
                 WHERE c.number = d.number AND c.role = 'paid'), 0)::DECIMAL(18, 2) AS paid
FROM billing_documents AS d
WHERE d.period = $period
ORDER BY d.tenant, d.issue_date, d.series, d.seq;
