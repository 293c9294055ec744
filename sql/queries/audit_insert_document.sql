-- Keep a document an entry vouches for (names are unique; content never changes).
INSERT INTO audit_documents (name, sha256, content, stored_at)
VALUES ($name, $sha256, $content, $stored_at);
