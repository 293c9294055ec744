-- Digest of each collected window in [start, end), keyed by Unix ms.
SELECT epoch_ms(window_start) AS window_ms, digest
FROM collected_windows
WHERE window_start >= $start AND window_start < $end_;
