-- Record a document pushed to Stripe, or refresh what Stripe says about it.
INSERT INTO stripe_documents (
    number, kind, tenant, period, references_number, stripe_customer_id, stripe_id,
    total_cents, stripe_status, stripe_status_at
)
VALUES (
    $number, $kind, $tenant, $period, $references_number, $stripe_customer_id, $stripe_id,
    $total_cents, $stripe_status, $at
)
ON CONFLICT (number) DO UPDATE SET
    stripe_id = excluded.stripe_id,
    stripe_customer_id = excluded.stripe_customer_id,
    stripe_status = excluded.stripe_status,
    stripe_status_at = excluded.stripe_status_at
