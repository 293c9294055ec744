-- Billable usage of [start, end): jobs present in jobs.csv, per job x model x MIG profile
-- x site (the site of the GPU's host in the nodes.csv version in force; '' if unknown).
-- gpu_seconds DECIMAL(38,9); job_class: jobs.csv class (on_demand | spot | reserved).
WITH scoped AS (
    SELECT u.job_id, u.gpu_model, u.mig_profile, u.hosts[1] AS host, u.gpu_ns, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
      -- $tenant: only that tenant's jobs (jobs.csv); NULL: every job
      AND ($tenant::VARCHAR IS NULL OR u.job_id IN (SELECT job_id FROM jobs WHERE tenant = $tenant))
)
SELECT s.job_id, j.tenant, j.project, s.gpu_model, s.mig_profile,
       coalesce(n.site, '') AS site, coalesce(n.country, '') AS country,
       sum(s.gpu_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS gpu_seconds,
       j.job_class
FROM scoped AS s
JOIN jobs AS j USING (job_id)
LEFT JOIN nodes AS n ON n.hostname = s.host AND n.version = s.nodes_version
GROUP BY s.job_id, j.tenant, j.project, s.gpu_model, s.mig_profile, n.site, n.country, j.job_class
ORDER BY j.tenant, s.job_id, s.gpu_model, s.mig_profile NULLS FIRST, site;
