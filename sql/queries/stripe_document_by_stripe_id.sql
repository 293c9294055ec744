-- The gpumeter number of a Stripe invoice / credit note id.
SELECT number
FROM stripe_documents
WHERE stripe_id = $stripe_id
