-- Per job x GPU model x MIG profile x site of [start, end): when it ran and what it drew,
-- for the FOCUS export. Site and provider as in report_billable (the nodes.csv version in
-- force when each window was metered; '' when the host is unknown).
-- first_window / end_window: TIMESTAMPTZ UTC, end exclusive; energy_uj: integer microjoules.
WITH scoped AS (
    SELECT u.job_id, u.gpu_model, u.mig_profile, u.hosts[1] AS host, u.window_start, u.energy_uj,
           cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
)
SELECT s.job_id, s.gpu_model, s.mig_profile,
       coalesce(n.site, '') AS site,
       min(n.provider) AS provider,
       min(s.window_start) AS first_window,
       max(s.window_start) + INTERVAL 1 HOUR AS end_window,
       sum(s.energy_uj)::HUGEINT AS energy_uj
FROM scoped AS s
LEFT JOIN nodes AS n ON n.hostname = s.host AND n.version = s.nodes_version
GROUP BY s.job_id, s.gpu_model, s.mig_profile, n.site;
