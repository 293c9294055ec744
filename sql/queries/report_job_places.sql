-- Per job in [start, end): its hosts with their countries in the nodes.csv version in force
-- (NULL: host not in nodes.csv), its declared data locations and tenant (NULL when absent
-- from jobs.csv), and its GPU-seconds (DECIMAL(38,9)). Hosts are unnested before the join
-- to nodes (a join inside the lateral unnest runs row by row: ~10 s for a month of 2,048 GPUs).
WITH scoped AS (
    SELECT u.job_id, u.hosts, u.gpu_ns, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
      -- $tenant: only that tenant's jobs (jobs.csv); NULL: every job
      AND ($tenant::VARCHAR IS NULL OR u.job_id IN (SELECT job_id FROM jobs WHERE tenant = $tenant))
),
job_hosts AS (
    SELECT DISTINCT job_id, unnest(hosts) AS host, nodes_version
    FROM scoped
),
host_rows AS (
    SELECT DISTINCT jh.job_id, jh.host, n.country
    FROM job_hosts AS jh
    LEFT JOIN nodes AS n ON n.hostname = jh.host AND n.version = jh.nodes_version
),
seconds AS (
    SELECT job_id, sum(gpu_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS gpu_seconds
    FROM scoped
    GROUP BY job_id
)
SELECT h.job_id, j.tenant, s.gpu_seconds,
       list(struct_pack(host := h.host, country := h.country) ORDER BY h.host, h.country) AS places,
       coalesce(j.data_locations, []::VARCHAR[]) AS data_locations
FROM host_rows AS h
JOIN seconds AS s USING (job_id)
LEFT JOIN jobs AS j USING (job_id)
GROUP BY h.job_id, j.tenant, s.gpu_seconds, j.data_locations
ORDER BY h.job_id;
