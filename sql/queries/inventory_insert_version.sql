-- Record a new version of an inventory file (exact bytes and SHA-256).
INSERT INTO inventory_versions (kind, version, sha256, loaded_at, content)
VALUES ($kind, $version, $sha256, $loaded_at, $content);
