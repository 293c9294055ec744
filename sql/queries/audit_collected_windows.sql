-- Metered windows in [start, end) with the digest metering stored for their usage rows.
SELECT window_start, interval_ms, rows, digest, nodes_version, backend, collected_at
FROM collected_windows
WHERE window_start >= $start AND window_start < $end_
ORDER BY window_start;
