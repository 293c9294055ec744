-- Per job in [start, end): every host telemetry showed it on, with that host's country in
-- the nodes.csv version in force (NULL: the host is not in nodes.csv), and its declared
-- data locations and tenant (NULL when the job is absent from jobs.csv).
WITH scoped AS (
    SELECT u.job_id, u.hosts, u.gpu_ns, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
),
host_rows AS (
    SELECT DISTINCT s.job_id, h.host, n.country
    FROM scoped AS s, unnest(s.hosts) AS h(host)
    LEFT JOIN nodes AS n ON n.hostname = h.host AND n.version = s.nodes_version
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
