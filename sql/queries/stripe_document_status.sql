-- Stripe's status of a document as just read from the API (time UTC).
UPDATE stripe_documents
SET stripe_status = $stripe_status, stripe_status_at = $at
WHERE number = $number
