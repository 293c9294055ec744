-- Stored perfect-subtree hashes at the given positions (audit.merkle.position).
SELECT pos, hash
FROM audit_tree
WHERE pos IN (SELECT unnest($positions::BIGINT[]));
