-- What the dashboards' cached results depend on, in one cheap read: when any of these
-- values changes, the results computed from the old ones are stale. Times are UTC.
SELECT
    (SELECT count(*) FROM collected_windows) AS windows,
    (SELECT max(collected_at) FROM collected_windows) AS collected_at,
    (SELECT coalesce(string_agg(kind || ':' || v::VARCHAR, ',' ORDER BY kind), '')
     FROM (SELECT kind, max(version) AS v FROM inventory_versions GROUP BY kind)) AS inventory,
    (SELECT count(*) FROM billing_documents) AS documents,
    (SELECT max(finalized_at) FROM billing_documents) AS finalized_at,
    (SELECT count(*) FROM stripe_documents) AS stripe_documents,
    (SELECT max(greatest(stripe_status_at, coalesce(payment_status_at, stripe_status_at)))
     FROM stripe_documents) AS stripe_at,
    (SELECT coalesce(max(idx) + 1, 0) FROM audit_entries) AS audit_size,
    (SELECT coalesce(max(id), 0) FROM audit_checkpoints) AS checkpoint_id;
