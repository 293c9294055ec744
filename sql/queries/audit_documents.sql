-- Stored documents with the given names.
SELECT name, sha256, content
FROM audit_documents
WHERE name IN (SELECT unnest($names::VARCHAR[]))
ORDER BY name;
