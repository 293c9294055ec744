-- Every document issued for one month, in issue order (series, then number).
SELECT number, kind, type_code, tenant, period, issue_date, due_date,
       references_number, references_date, net, vat_treatment, vat_rate, vat, total,
       json_sha256, pdf_sha256, xml_sha256
FROM billing_documents
WHERE period = $period
ORDER BY tenant, issue_date, series, seq;
