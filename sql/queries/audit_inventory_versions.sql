-- Every inventory file version loaded, oldest first, with its exact bytes.
SELECT kind, version, sha256, loaded_at, content
FROM inventory_versions
ORDER BY loaded_at, kind, version;
