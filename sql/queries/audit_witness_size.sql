-- The size of the tree head a witness holds, as its latest answer told (none: never answered).
SELECT witness_size
FROM audit_witness_submissions
WHERE witness = $witness AND witness_size IS NOT NULL
ORDER BY id DESC
LIMIT 1;
