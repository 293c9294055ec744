-- Billable usage of [start, end) already summed per tenant x model x MIG profile x site x job class
-- (what an invoice prices); job_id is the group's first job (named in errors), project ''.
-- Same columns as report_billable. gpu_seconds DECIMAL(38,9).
WITH scoped AS (
    SELECT u.job_id, u.gpu_model, u.mig_profile, u.hosts[1] AS host, u.gpu_ns, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
)
SELECT min(s.job_id) AS job_id, j.tenant, '' AS project, s.gpu_model, s.mig_profile,
       coalesce(n.site, '') AS site, coalesce(n.country, '') AS country,
       sum(s.gpu_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS gpu_seconds,
       j.job_class
FROM scoped AS s
JOIN jobs AS j USING (job_id)
LEFT JOIN nodes AS n ON n.hostname = s.host AND n.version = s.nodes_version
GROUP BY j.tenant, s.gpu_model, s.mig_profile, n.site, n.country, j.job_class
ORDER BY j.tenant, s.gpu_model, s.mig_profile NULLS FIRST, site;
