-- Keep a witness's valid cosignature of a checkpoint (a second one for the same pair is ignored).
INSERT INTO audit_cosignatures (checkpoint_id, witness, name, signature, cosigned_at, received_at)
VALUES ($checkpoint_id, $witness, $name, $signature, $cosigned_at, $received_at)
ON CONFLICT DO NOTHING;
