-- Start of each collected window in [start, end), as Unix ms, oldest first.
SELECT epoch_ms(window_start) AS window_ms
FROM collected_windows
WHERE window_start >= $start AND window_start < $end_
ORDER BY window_start;
