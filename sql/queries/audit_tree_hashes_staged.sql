-- Stored perfect-subtree hashes for many positions (registered as audit_wanted).
SELECT t.pos, t.hash
FROM audit_tree AS t
JOIN audit_wanted AS w ON t.pos = w.pos;
