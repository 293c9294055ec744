-- Per calendar month (UTC) with metered windows: how many, and a digest over their usage
-- digests in window order. A month's cached results stay valid while this row is unchanged
-- (a re-metered window with different usage changes its digest).
SELECT strftime(window_start, '%Y-%m') AS month,
       count(*) AS windows,
       sum(rows) AS usage_rows,
       max(collected_at) AS collected_at,
       md5(string_agg(digest || '@' || coalesce(nodes_version, 0)::VARCHAR, ',' ORDER BY window_start)) AS digest
FROM collected_windows
GROUP BY month
ORDER BY month;
