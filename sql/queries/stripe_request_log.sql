-- Append one request sent to Stripe (amounts in EUR cents, times UTC).
INSERT INTO stripe_requests (
    sent_at, number, tenant, step, method, path, idempotency_key,
    amount_cents, stripe_object_id, outcome, http_status, error
)
VALUES (
    $sent_at, $number, $tenant, $step, $method, $path, $idempotency_key,
    $amount_cents, $stripe_object_id, $outcome, $http_status, $error
)
