-- Record a verified webhook event once; returns its id only the first time.
INSERT INTO stripe_events (event_id, type, stripe_id, number, created_at, received_at)
VALUES ($event_id, $type, $stripe_id, $number, $created_at, $received_at)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
