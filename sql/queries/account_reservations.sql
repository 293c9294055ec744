-- $tenant's reservation lines on the invoices of $period: per contract and GPU model, the
-- GPU-hours included (billed whether used or not) and those drawn from them, as printed.
SELECT d.tenant, l.contract, l.gpu_model, l.site,
       sum(l.gpu_hours) AS included_gpu_hours,
       sum(l.used_gpu_hours) AS used_gpu_hours,
       sum(l.amount) AS amount_eur
FROM billing_document_lines AS l
JOIN billing_documents AS d USING (number)
WHERE d.tenant = $tenant
  AND d.period = $period
  AND d.kind = 'invoice'
  AND l.kind = 'reservation'
GROUP BY d.tenant, l.contract, l.gpu_model, l.site
ORDER BY l.contract, l.gpu_model, l.site;
