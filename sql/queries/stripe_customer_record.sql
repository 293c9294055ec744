-- Remember a tenant's Stripe customer (source: tenants.csv | created | found).
INSERT INTO stripe_customers (tenant, stripe_customer_id, source, recorded_at)
VALUES ($tenant, $customer_id, $source, $at)
ON CONFLICT (tenant) DO UPDATE SET
    stripe_customer_id = excluded.stripe_customer_id,
    source = excluded.source,
    recorded_at = excluded.recorded_at
