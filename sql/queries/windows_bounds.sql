-- The oldest and the newest collected window, as Unix ms (NULL, NULL when none).
SELECT epoch_ms(min(window_start)) AS oldest_ms, epoch_ms(max(window_start)) AS newest_ms
FROM collected_windows;
