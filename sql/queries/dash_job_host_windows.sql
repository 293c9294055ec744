-- Evidence for the named jobs in [start, end): per job x host, the host's site and country in
-- the nodes.csv version in force (NULL country: host not in nodes.csv), the first window and
-- the end of the last window it ran there (UTC, end exclusive), and its GPU-seconds there
-- (DECIMAL(38,9)). Hosts are unnested before the join to nodes (see dash_job_places.sql).
WITH scoped AS (
    SELECT u.job_id, u.window_start, u.gpu_ns, unnest(u.hosts) AS host, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
      AND list_contains($jobs::VARCHAR[], u.job_id)
),
per_host AS (
    SELECT job_id, host, nodes_version, min(window_start) AS first_window, max(window_start) AS last_window,
           sum(gpu_ns) AS gpu_ns
    FROM scoped
    GROUP BY job_id, host, nodes_version
)
SELECT p.job_id, p.host, n.site, n.country,
       min(p.first_window) AS first_window,
       max(p.last_window) + INTERVAL 1 HOUR AS end_window,
       sum(p.gpu_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS gpu_seconds
FROM per_host AS p
LEFT JOIN nodes AS n ON n.hostname = p.host AND n.version = p.nodes_version
GROUP BY p.job_id, p.host, n.site, n.country
ORDER BY p.job_id, p.host, n.country NULLS FIRST;
