-- One document's Stripe state, if it was pushed.
SELECT number, kind, tenant, period, references_number, stripe_customer_id, stripe_id,
       total_cents, stripe_status, stripe_status_at, payment_status, payment_status_at
FROM stripe_documents
WHERE number = $number
