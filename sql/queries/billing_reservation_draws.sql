-- What reservations draw in [start, end): per tenant x GPU model x MIG profile x site, and
-- per reservation in force, the slice-nanoseconds of usage and how many of them were drawn.
-- A slice-nanosecond is one nanosecond of one MIG compute slice: a whole GPU holds S of
-- them per nanosecond, a MIG instance of profile Ng.* N (`units`, from the rate card), so
-- whole GPUs and MIG instances of a model add up exactly, in integers.
--
-- Inputs (registered frames, built by billing.reservations):
--   staged_reservations: id, tenant, gpu_model, site ('' = any site),
--       cap (slice-ns one hour of the reservation holds: gpus x 3600e9 x S), start_ts, end_ts (UTC);
--   staged_draw_groups: tenant, gpu_model, mig_profile, site, units, rank (1 = drawn first).
-- Only jobs not of class 'spot' draw. In each UTC hour (a usage window) a site reservation
-- draws first from the usage on its site, in rank order (jobs of a group in id order), up to
-- its cap; a site-less one then draws from what is left on every site, in the same order, up
-- to its cap (docs/adr/0009-contracts.md). $per_job: one row per job too (FOCUS), else job_id
-- is NULL and the rows are per group.
-- Sites as in report_billable: the host's site in the nodes.csv version in force ('' if unknown).
WITH scoped AS (
    SELECT u.window_start, u.job_id, u.gpu_model, u.mig_profile, u.hosts[1] AS host, u.gpu_ns, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
),
hourly AS (
    SELECT j.tenant, s.gpu_model, s.mig_profile, g.site, s.window_start, g.rank, s.job_id,
           sum(s.gpu_ns)::HUGEINT * g.units AS sns
    FROM scoped AS s
    JOIN jobs AS j USING (job_id)
    LEFT JOIN nodes AS n ON n.hostname = s.host AND n.version = s.nodes_version
    JOIN staged_draw_groups AS g
      ON g.tenant = j.tenant AND g.gpu_model = s.gpu_model
     AND g.mig_profile IS NOT DISTINCT FROM s.mig_profile AND g.site = coalesce(n.site, '')
    WHERE j.job_class <> 'spot'
    GROUP BY j.tenant, s.gpu_model, s.mig_profile, g.site, s.window_start, g.rank, s.job_id, g.units
),
at_site AS (
    SELECT h.*, r.id AS site_reservation, coalesce(r.cap, 0) AS site_cap
    FROM hourly AS h
    LEFT JOIN staged_reservations AS r
      ON r.tenant = h.tenant AND r.gpu_model = h.gpu_model AND r.site <> '' AND r.site = h.site
     AND h.window_start >= r.start_ts AND h.window_start < r.end_ts
),
site_drawn AS (
    SELECT *,
           greatest(0, least(sns, site_cap - coalesce(sum(sns) OVER (
               PARTITION BY tenant, gpu_model, site, window_start ORDER BY rank, job_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS drawn_site
    FROM at_site
),
anywhere AS (
    SELECT d.*, r.id AS any_reservation, coalesce(r.cap, 0) AS any_cap
    FROM site_drawn AS d
    LEFT JOIN staged_reservations AS r
      ON r.tenant = d.tenant AND r.gpu_model = d.gpu_model AND r.site = ''
     AND d.window_start >= r.start_ts AND d.window_start < r.end_ts
),
any_drawn AS (
    SELECT *,
           greatest(0, least(sns - drawn_site, any_cap - coalesce(sum(sns - drawn_site) OVER (
               PARTITION BY tenant, gpu_model, window_start ORDER BY rank, job_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS drawn_any
    FROM anywhere
)
SELECT tenant, gpu_model, mig_profile, site, site_reservation, any_reservation,
       CASE WHEN $per_job THEN job_id END AS job_id,
       sum(sns)::HUGEINT AS sns, sum(drawn_site)::HUGEINT AS drawn_site, sum(drawn_any)::HUGEINT AS drawn_any
FROM any_drawn
GROUP BY ALL
ORDER BY tenant, gpu_model, mig_profile NULLS FIRST, site, site_reservation NULLS FIRST, any_reservation NULLS FIRST,
         job_id NULLS FIRST;
