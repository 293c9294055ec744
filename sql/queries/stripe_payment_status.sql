-- Payment status of the month's documents in Stripe, for the finance dashboard.
-- amount: EUR incl. VAT, negative for credit notes; updated_at: UTC.
-- status: paid wins (from Stripe's API or an invoice.paid event); then void / uncollectible;
-- then a failed payment attempt; else Stripe's own status (draft, open, issued).
WITH month_documents AS (
    SELECT *
    FROM stripe_documents
    WHERE period = $month
),
resolved AS (
    SELECT
        number,
        stripe_id AS stripe_invoice_id,
        CASE
            WHEN stripe_status = 'paid' OR payment_status = 'paid' THEN 'paid'
            WHEN stripe_status IN ('void', 'uncollectible') THEN stripe_status
            WHEN payment_status = 'payment_failed' THEN 'payment_failed'
            ELSE stripe_status
        END AS status,
        CAST(
            CASE WHEN kind = 'credit_note' THEN -total_cents ELSE total_cents END AS DECIMAL(18, 2)
        ) / 100 AS amount,
        greatest(stripe_status_at, coalesce(payment_status_at, stripe_status_at)) AS updated_at
    FROM month_documents
)
SELECT number, stripe_invoice_id, status, CAST(amount AS DECIMAL(18, 2)) AS amount, updated_at
FROM resolved
ORDER BY number
