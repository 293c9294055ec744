-- Apply a payment event to its invoice unless a later event already did (times UTC).
UPDATE stripe_documents
SET payment_status = $payment_status, payment_status_at = $at
WHERE stripe_id = $stripe_id
  AND (payment_status_at IS NULL OR payment_status_at <= $at)
RETURNING number
