-- 0014: monthly budgets per tenant and the outbox of their threshold alerts.
-- Money is EUR excl. VAT as DECIMAL (never DOUBLE); times are TIMESTAMPTZ, UTC; a month is
-- 'YYYY-MM', a UTC calendar month. An alert is decided once: the unique key on
-- (tenant, month, threshold_percent) makes a second decision for the same threshold
-- impossible, whatever re-collects, restarts or budget changes happen later.

-- The budget of each tenant that has one (`gpumeter budgets set`).
CREATE TABLE budgets (
    tenant      VARCHAR PRIMARY KEY,        -- tenant id (tenants.csv)
    monthly_eur DECIMAL(18, 2) NOT NULL,    -- EUR excl. VAT per calendar month, > 0
    thresholds  INTEGER[] NOT NULL,         -- percentages of monthly_eur, 1..1000, ascending, distinct
    updated_at  TIMESTAMPTZ NOT NULL        -- UTC, when it was last set
);

-- The outbox: one row per threshold a tenant's month reached, inserted in the transaction
-- that decided it. `body` is the CloudEvent exactly as every delivery attempt sends it.
CREATE TABLE budget_alerts (
    event_id          VARCHAR PRIMARY KEY,  -- the CloudEvents id, derived from source, tenant, month, threshold
    tenant            VARCHAR NOT NULL,
    month             VARCHAR NOT NULL,     -- YYYY-MM (UTC calendar month)
    threshold_percent INTEGER NOT NULL,
    budget_eur        DECIMAL(18, 2) NOT NULL,  -- the budget when the threshold was reached
    net_eur           DECIMAL(18, 2) NOT NULL,  -- the month-to-date net (excl. VAT) that reached it
    decided_at        TIMESTAMPTZ NOT NULL, -- UTC; also the event's `time`
    body              BLOB NOT NULL,        -- the JSON bytes POSTed (and signed)
    delivered_at      TIMESTAMPTZ,          -- UTC, when the webhook accepted it (2xx); NULL while pending
    UNIQUE (tenant, month, threshold_percent)
);

CREATE SEQUENCE budget_delivery_id START 1;

-- Every delivery attempt: written before the request goes out, completed when it ends.
-- An attempt still 'sending' was cut short (the process stopped while it waited).
CREATE TABLE budget_deliveries (
    id          BIGINT PRIMARY KEY DEFAULT nextval('budget_delivery_id'),
    event_id    VARCHAR NOT NULL,           -- budget_alerts.event_id
    url         VARCHAR NOT NULL,           -- where it was sent
    started_at  TIMESTAMPTZ NOT NULL,       -- UTC
    finished_at TIMESTAMPTZ,                -- UTC; NULL while sending (or when cut short)
    outcome     VARCHAR NOT NULL,           -- sending | accepted | refused | unreachable
    http_status INTEGER,                    -- the answer's status; NULL when none came
    error       VARCHAR                     -- what went wrong, bounded to 500 characters
);
