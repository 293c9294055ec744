-- The hours of [start, end_) that no collect has metered (no row in collected_windows):
-- how many, and the first of them (NULL when every hour was metered).
WITH hours AS (
    SELECT unnest(range($start::TIMESTAMPTZ, $end_::TIMESTAMPTZ, INTERVAL 1 HOUR)) AS window_start
),
missing AS (
    SELECT h.window_start
    FROM hours AS h
    ANTI JOIN collected_windows AS cw ON cw.window_start = h.window_start
)
SELECT count(*) AS missing, min(window_start) AS first_missing
FROM missing;
