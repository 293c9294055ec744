-- The steps already done for one document.
SELECT step, stripe_object_id, amount_cents
FROM stripe_steps
WHERE number = $number
ORDER BY step
