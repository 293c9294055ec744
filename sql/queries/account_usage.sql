-- One tenant's usage per job-month: calendar month (UTC) x job x GPU model x MIG profile x
-- site, over the windows of [start, end) (a NULL bound: unbounded). Only the jobs jobs.csv
-- gives to $tenant. Site and country: the GPU's host in the nodes.csv version in force when
-- the window was metered ('' when unknown). first_window, last_window: UTC starts of the
-- first and last metered hour; gpu_seconds (held, shared GPUs 1/N) and busy_gpu_seconds:
-- DECIMAL(38,9) seconds, exact; gpu_hours: the same held time in hours (DOUBLE, for
-- reading); energy_kwh: attributed energy in kWh (DOUBLE).
WITH own_jobs AS (
    SELECT job_id, tenant, project FROM jobs WHERE tenant = $tenant
),
scoped AS (
    SELECT u.window_start, u.job_id, u.gpu_model, u.mig_profile, u.hosts[1] AS host, cw.nodes_version,
           u.gpu_ns, u.busy_ns, u.energy_uj
    FROM usage AS u
    JOIN own_jobs USING (job_id)
    JOIN collected_windows AS cw USING (window_start)
    WHERE ($start::TIMESTAMPTZ IS NULL OR u.window_start >= $start)
      AND ($end_::TIMESTAMPTZ IS NULL OR u.window_start < $end_)
)
SELECT strftime(s.window_start, '%Y-%m') AS month,
       j.tenant, j.project, s.job_id, s.gpu_model, s.mig_profile,
       coalesce(n.site, '') AS site, coalesce(n.country, '') AS country,
       min(s.window_start) AS first_window,
       max(s.window_start) AS last_window,
       sum(s.gpu_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS gpu_seconds,
       sum(s.busy_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS busy_gpu_seconds,
       sum(s.gpu_ns)::DOUBLE / 3.6e12 AS gpu_hours,
       sum(s.energy_uj)::DOUBLE / 3.6e12 AS energy_kwh
FROM scoped AS s
JOIN own_jobs AS j USING (job_id)
LEFT JOIN nodes AS n ON n.hostname = s.host AND n.version = s.nodes_version
GROUP BY month, j.tenant, j.project, s.job_id, s.gpu_model, s.mig_profile, n.site, n.country
ORDER BY month, j.project, s.job_id, s.gpu_model, s.mig_profile NULLS FIRST, site;
