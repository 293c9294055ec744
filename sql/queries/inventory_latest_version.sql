-- The latest stored version of one inventory kind, with its digest.
SELECT version, sha256
FROM inventory_versions
WHERE kind = $kind
ORDER BY version DESC
LIMIT 1;
