-- SHA-256 of stored documents with the given names.
SELECT name, sha256
FROM audit_documents
WHERE name IN (SELECT unnest($names::VARCHAR[]));
