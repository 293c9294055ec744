-- Usage of [start, end) per tenant x site x country x GPU model x MIG profile: the one
-- aggregate the utilisation page (and the per-site split of revenue) is drawn from.
-- Site and country are those of the GPU's host in the nodes.csv version in force when the
-- window was metered ('' when the host is unknown); tenant is NULL for jobs absent from
-- jobs.csv. gpu_ns, busy_ns: held and busy GPU time, integer nanoseconds; energy_uj:
-- integer microjoules; jobs: distinct job ids.
WITH scoped AS (
    SELECT u.job_id, u.gpu_model, u.mig_profile, u.hosts[1] AS host, cw.nodes_version,
           u.gpu_ns, u.busy_ns, u.energy_uj
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
),
per_job AS (
    SELECT job_id, gpu_model, mig_profile, host, nodes_version,
           sum(gpu_ns)::HUGEINT AS gpu_ns, sum(busy_ns)::HUGEINT AS busy_ns, sum(energy_uj)::HUGEINT AS energy_uj
    FROM scoped
    GROUP BY job_id, gpu_model, mig_profile, host, nodes_version
)
SELECT j.tenant,
       coalesce(n.site, '') AS site,
       coalesce(n.country, '') AS country,
       p.gpu_model,
       p.mig_profile,
       sum(p.gpu_ns)::DECIMAL(38, 0) AS gpu_ns,
       sum(p.busy_ns)::DECIMAL(38, 0) AS busy_ns,
       sum(p.energy_uj)::DECIMAL(38, 0) AS energy_uj,
       count(DISTINCT p.job_id) AS jobs
FROM per_job AS p
LEFT JOIN jobs AS j USING (job_id)
LEFT JOIN nodes AS n ON n.hostname = p.host AND n.version = p.nodes_version
GROUP BY j.tenant, n.site, n.country, p.gpu_model, p.mig_profile
ORDER BY j.tenant NULLS LAST, site, p.gpu_model, p.mig_profile NULLS FIRST;
