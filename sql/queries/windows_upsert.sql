-- Mark windows as metered (staged_windows: window_ms, rows, digest), with what was used.
INSERT OR REPLACE INTO collected_windows
    (window_start, interval_ms, rows, digest, nodes_version, backend, collected_at)
SELECT make_timestamptz(window_ms * 1000), $interval_ms, rows, digest, $nodes_version, $backend, $collected_at
FROM staged_windows;
