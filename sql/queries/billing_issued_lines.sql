-- What has been issued for one month, per tenant and line key, signed: invoices count
-- positive, credit notes negative. gpu_hours as printed (6 places), amounts in EUR. A line key
-- is (model, profile, site, tier, kind, contract); a minimum-spend line's model is ''.
WITH signed AS (
    SELECT d.tenant, d.issue_date, d.series, d.seq, l.line_no,
           coalesce(l.gpu_model, '') AS gpu_model, l.mig_profile, l.site, l.tier_from_gpu_hours, l.kind, l.contract,
           l.description, l.unit_price, l.list_unit_price, l.discount_percent,
           CASE WHEN d.kind = 'credit_note' THEN -l.gpu_hours ELSE l.gpu_hours END AS gpu_hours,
           CASE WHEN d.kind = 'credit_note' THEN -l.amount ELSE l.amount END AS amount
    FROM billing_documents AS d
    JOIN billing_document_lines AS l USING (number)
    WHERE d.period = $period
)
SELECT tenant, gpu_model, mig_profile, site, tier_from_gpu_hours, kind, contract,
       sum(gpu_hours) AS gpu_hours,
       sum(amount) AS amount,
       arg_max(unit_price, (issue_date, series, seq, line_no)) AS unit_price,
       arg_max(list_unit_price, (issue_date, series, seq, line_no)) AS list_unit_price,
       arg_max(discount_percent, (issue_date, series, seq, line_no)) AS discount_percent,
       arg_min(description, (issue_date, series, seq, line_no)) AS description
FROM signed
GROUP BY tenant, gpu_model, mig_profile, site, tier_from_gpu_hours, kind, contract
ORDER BY tenant, kind, gpu_model, mig_profile NULLS FIRST, site NULLS FIRST, tier_from_gpu_hours, contract NULLS FIRST;
