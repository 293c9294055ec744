-- Mark a window as metered, with the digest of what was stored for it.
INSERT OR REPLACE INTO collected_windows
    (window_start, interval_ms, rows, digest, nodes_version, backend, collected_at)
VALUES (make_timestamptz($window_ms * 1000), $interval_ms, $rows, $digest, $nodes_version, $backend, $collected_at);
