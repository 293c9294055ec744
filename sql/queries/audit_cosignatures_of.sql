-- Every cosignature gathered for one checkpoint, by witness vkey.
SELECT witness, name, signature, cosigned_at
FROM audit_cosignatures
WHERE checkpoint_id = $checkpoint_id
ORDER BY witness;
