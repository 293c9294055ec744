-- Record a delivery attempt before its request goes out; returns its id.
INSERT INTO budget_deliveries (event_id, url, started_at, outcome)
VALUES ($event_id, $url, $started_at, 'sending')
RETURNING id;
