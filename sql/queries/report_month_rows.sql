-- Usage of [start, end) per job x GPU model x MIG profile.
-- gpu_seconds, busy_gpu_seconds: DECIMAL(38,9) seconds; energy_kwh: DOUBLE kWh.
-- hosts: sorted distinct host labels; countries: their countries in the nodes.csv version
-- in force when each window was metered (unknown hosts have none).
WITH scoped AS (
    SELECT u.*, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
),
sums AS (
    SELECT job_id, gpu_model, mig_profile,
           sum(gpu_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS gpu_seconds,
           sum(busy_ns)::DECIMAL(38, 0) * 0.000000001::DECIMAL(38, 9) AS busy_gpu_seconds,
           sum(energy_uj)::DOUBLE / 3.6e12 AS energy_kwh
    FROM scoped
    GROUP BY job_id, gpu_model, mig_profile
),
row_hosts AS (
    -- unnest before joining nodes: a join inside the lateral unnest runs row by row
    SELECT DISTINCT job_id, gpu_model, mig_profile, unnest(hosts) AS host, nodes_version
    FROM scoped
),
host_rows AS (
    SELECT DISTINCT rh.job_id, rh.gpu_model, rh.mig_profile, rh.host, n.country
    FROM row_hosts AS rh
    LEFT JOIN nodes AS n ON n.hostname = rh.host AND n.version = rh.nodes_version
),
places AS (
    SELECT job_id, gpu_model, mig_profile,
           list_sort(list_distinct(list(host))) AS hosts,
           list_sort(list_distinct(list(country) FILTER (WHERE country IS NOT NULL))) AS countries
    FROM host_rows
    GROUP BY job_id, gpu_model, mig_profile
)
SELECT s.job_id, j.tenant, s.gpu_model, s.mig_profile, s.gpu_seconds, s.busy_gpu_seconds, s.energy_kwh,
       p.hosts, coalesce(p.countries, []::VARCHAR[]) AS countries
FROM sums AS s
JOIN places AS p
  ON p.job_id = s.job_id AND p.gpu_model = s.gpu_model AND p.mig_profile IS NOT DISTINCT FROM s.mig_profile
LEFT JOIN jobs AS j ON j.job_id = s.job_id
ORDER BY s.job_id, s.gpu_model, s.mig_profile NULLS FIRST;
