-- Every stored subtree hash in append order.
SELECT pos, hash
FROM audit_tree
ORDER BY pos;
