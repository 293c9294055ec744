-- Auditor bundles made for one month (all months when $month is NULL), newest first.
-- tenant NULL: a whole-log bundle. made_at: UTC. cosignatures: how many witnesses had
-- cosigned the bundle's checkpoint when it was built (gathered before the bundle is written);
-- witness_failures: each witness whose submission of that checkpoint failed, and why.
SELECT
    e.id,
    e.month,
    e.tenant,
    e.made_by,
    e.made_at,
    e.entry_idx,
    e.checkpoint_id,
    c.size AS checkpoint_size,
    (SELECT count(*) FROM audit_cosignatures AS s WHERE s.checkpoint_id = e.checkpoint_id) AS cosignatures,
    (
        SELECT string_agg(DISTINCT w.name || ': ' || w.detail, '; ' ORDER BY w.name || ': ' || w.detail)
        FROM audit_witness_submissions AS w
        WHERE w.checkpoint_id = e.checkpoint_id AND w.outcome = 'failed'
    ) AS witness_failures
FROM audit_exports AS e
LEFT JOIN audit_checkpoints AS c ON c.id = e.checkpoint_id
WHERE $month::VARCHAR IS NULL OR e.month = $month
ORDER BY e.id DESC
LIMIT 200;
