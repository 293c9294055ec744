-- Coverage gaps overlapping [start, end): stretches with no sample for a GPU that was
-- scraped before and after. Inside a window they are stored; across windows they run from
-- the slot after a window's last sample to the next window's first sample.
WITH cov AS (
    SELECT uuid, hostname, window_start, first_slot, last_slot,
           lead(first_slot) OVER (PARTITION BY uuid ORDER BY window_start) AS next_first,
           lead(window_start) OVER (PARTITION BY uuid ORDER BY window_start) AS next_window
    FROM gpu_coverage
),
between_windows AS (
    -- only where every window in between was metered (else it is not a gap, just unmetered)
    SELECT c.hostname, c.uuid, c.last_slot + to_milliseconds($interval_ms) AS gap_start, c.next_first AS gap_end
    FROM cov AS c
    WHERE c.next_first IS NOT NULL
      AND c.next_first > c.last_slot + to_milliseconds($interval_ms)
      AND (SELECT count(*) FROM collected_windows AS cw
           WHERE cw.window_start > c.window_start AND cw.window_start < c.next_window)
          = (epoch(c.next_window) - epoch(c.window_start)) / 3600 - 1
),
inside AS (
    SELECT c.hostname, g.uuid, g.gap_start, g.gap_end
    FROM coverage_gaps AS g
    JOIN gpu_coverage AS c USING (window_start, uuid)
),
every_gap AS (
    SELECT * FROM between_windows
    UNION ALL
    SELECT * FROM inside
)
SELECT hostname, uuid, gap_start AS "start", gap_end AS "end"
FROM every_gap
WHERE gap_start < $end_ AND gap_end > $start
ORDER BY hostname, uuid, gap_start;
