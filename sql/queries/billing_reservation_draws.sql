-- What reservations draw in [start, end): per tenant x GPU model x MIG profile x site, and
-- per reservation in force, the slice-nanoseconds of usage and how many of them were drawn.
-- A slice-nanosecond is one nanosecond of one MIG compute slice: a whole GPU holds S of
-- them per nanosecond, a MIG instance of profile Ng.* N (`units`, from the rate card), so
-- whole GPUs and MIG instances of a model add up exactly, in integers.
--
-- Inputs (registered frames, built by billing.drawdown):
--   staged_draw_groups: tenant, gpu_model, mig_profile, site, units, rank (1 = drawn first; the
--       group's id in the result), pair (an integer id of the group's tenant x GPU model);
--   staged_reservations: id, pair, site ('' = any site),
--       cap (slice-ns one hour of the reservation holds: gpus x 3600e9 x S), start_ts, end_ts (UTC).
-- Only jobs not of class 'spot' draw. In each UTC hour (a usage window) a site reservation
-- draws first from the usage on its site, in rank order (jobs of a group in id order), up to
-- its cap; a site-less one then draws from what is left on every site, in the same order, up
-- to its cap (docs/adr/0009-contracts.md). $per_job: one row per job too (FOCUS), else job_id
-- is NULL and the rows are per group (the same draws per group: a group's place in the order
-- does not depend on how its jobs are ordered among themselves).
-- Sites as in report_billable: the host's site in the nodes.csv version in force ('' if unknown).
WITH scoped AS (
    SELECT u.window_start, u.job_id, u.gpu_model, u.mig_profile, u.hosts[1] AS host, u.gpu_ns, cw.nodes_version
    FROM usage AS u
    JOIN collected_windows AS cw USING (window_start)
    WHERE u.window_start >= $start AND u.window_start < $end_
      AND u.gpu_model IN (SELECT gpu_model FROM staged_draw_groups)
      AND u.job_id IN (
          SELECT job_id FROM jobs WHERE job_class <> 'spot' AND tenant IN (SELECT tenant FROM staged_draw_groups)
      )
),
hourly AS (
    SELECT g.rank, g.pair, g.site, s.window_start, CASE WHEN $per_job THEN s.job_id END AS job_id,
           sum(s.gpu_ns)::HUGEINT * g.units AS sns
    FROM scoped AS s
    JOIN jobs AS j USING (job_id)
    LEFT JOIN nodes AS n ON n.hostname = s.host AND n.version = s.nodes_version
    JOIN staged_draw_groups AS g
      ON g.tenant = j.tenant AND g.gpu_model = s.gpu_model
     AND coalesce(g.mig_profile, '') = coalesce(s.mig_profile, '') AND g.site = coalesce(n.site, '')
    WHERE j.job_class <> 'spot'
    GROUP BY g.rank, g.pair, g.site, s.window_start, job_id, g.units
),
site_hours AS (
    SELECT pair, site, window_start, sum(sns) AS site_total
    FROM hourly
    GROUP BY pair, site, window_start
),
at_site AS (
    SELECT h.*, t.site_total, r.id AS site_reservation, coalesce(r.cap, 0) AS site_cap
    FROM hourly AS h
    JOIN site_hours AS t USING (pair, site, window_start)
    LEFT JOIN staged_reservations AS r
      ON r.pair = h.pair AND r.site = h.site AND r.site <> ''
     AND h.window_start >= r.start_ts AND h.window_start < r.end_ts
),
-- An hour within the cap is drawn whole; only an hour over it needs the order.
site_drawn AS (
    SELECT *, CASE WHEN site_cap = 0 THEN 0 ELSE sns END AS drawn_site
    FROM at_site
    WHERE site_total <= site_cap OR site_cap = 0
    UNION ALL BY NAME
    SELECT *,
           greatest(0, least(sns, site_cap - coalesce(sum(sns) OVER (
               PARTITION BY pair, site, window_start ORDER BY rank, job_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS drawn_site
    FROM at_site
    WHERE site_total > site_cap AND site_cap > 0
),
any_hours AS (
    SELECT pair, window_start, sum(sns - drawn_site) AS any_total
    FROM site_drawn
    GROUP BY pair, window_start
),
anywhere AS (
    SELECT d.*, t.any_total, r.id AS any_reservation, coalesce(r.cap, 0) AS any_cap
    FROM site_drawn AS d
    JOIN any_hours AS t USING (pair, window_start)
    LEFT JOIN staged_reservations AS r
      ON r.pair = d.pair AND r.site = ''
     AND d.window_start >= r.start_ts AND d.window_start < r.end_ts
),
any_drawn AS (
    SELECT *, CASE WHEN any_cap = 0 THEN 0 ELSE sns - drawn_site END AS drawn_any
    FROM anywhere
    WHERE any_total <= any_cap OR any_cap = 0
    UNION ALL BY NAME
    SELECT *,
           greatest(0, least(sns - drawn_site, any_cap - coalesce(sum(sns - drawn_site) OVER (
               PARTITION BY pair, window_start ORDER BY rank, job_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS drawn_any
    FROM anywhere
    WHERE any_total > any_cap AND any_cap > 0
)
SELECT rank, site_reservation, any_reservation, job_id,
       sum(sns)::HUGEINT AS sns, sum(drawn_site)::HUGEINT AS drawn_site, sum(drawn_any)::HUGEINT AS drawn_any
FROM any_drawn
GROUP BY rank, site_reservation, any_reservation, job_id
ORDER BY rank, site_reservation NULLS FIRST, any_reservation NULLS FIRST, job_id NULLS FIRST;
