-- Mark a sync step of a document as done (idempotent: the first record stands).
INSERT INTO stripe_steps (number, step, idempotency_key, stripe_object_id, amount_cents, done_at)
VALUES ($number, $step, $idempotency_key, $stripe_object_id, $amount_cents, $at)
ON CONFLICT (number, step) DO NOTHING
