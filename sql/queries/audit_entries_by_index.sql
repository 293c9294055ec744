-- Entry bytes for the given indices.
SELECT idx, entry
FROM audit_entries
WHERE idx IN (SELECT unnest($idxs::BIGINT[]))
ORDER BY idx;
