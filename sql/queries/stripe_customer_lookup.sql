-- The Stripe customer of a tenant: the one named in tenants.csv (stripe_customer column),
-- and the one gpumeter recorded earlier. Either may be NULL.
WITH configured AS (
    SELECT nullif(trim(stripe_customer), '') AS customer_id
    FROM tenants
    WHERE tenant = $tenant
),
recorded AS (
    SELECT stripe_customer_id AS customer_id
    FROM stripe_customers
    WHERE tenant = $tenant
)
SELECT
    (SELECT customer_id FROM configured) AS configured,
    (SELECT customer_id FROM recorded) AS recorded
