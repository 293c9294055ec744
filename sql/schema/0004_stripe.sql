-- 0004: what gpumeter sent to Stripe, and what Stripe reported back.
-- Stripe is only the collection adapter: the legal invoice is gpumeter's. Only invoice
-- numbers, tenant ids, Stripe ids and integer EUR cents are stored here, which is all that
-- leaves the EU store (no names, addresses, job ids or hosts). Times are TIMESTAMPTZ, UTC.

CREATE SEQUENCE stripe_request_id START 1;

-- Append-only: one row per request sent to Stripe, written when its answer came back.
CREATE TABLE stripe_requests (
    id               BIGINT PRIMARY KEY DEFAULT nextval('stripe_request_id'),
    sent_at          TIMESTAMPTZ NOT NULL,  -- UTC, when the request was sent
    number           VARCHAR,               -- gpumeter invoice / credit note number
    tenant           VARCHAR,               -- tenant id
    step             VARCHAR NOT NULL,      -- customer | invoice | item:<n> | item:vat | finalize | credit_note | find:* | check
    method           VARCHAR NOT NULL,      -- GET | POST
    path             VARCHAR NOT NULL,      -- e.g. /v1/invoiceitems
    idempotency_key  VARCHAR,               -- Idempotency-Key sent (POST), else NULL
    amount_cents     BIGINT,                -- EUR cents sent (items, credit notes), else NULL
    stripe_object_id VARCHAR,               -- id of the object answered, if any
    outcome          VARCHAR NOT NULL,      -- ok | error
    http_status      INTEGER,               -- HTTP status, NULL when no answer came
    error            VARCHAR                -- Stripe error type, code and message
);

-- The steps of a document's sync that are done: the resume state. A step is recorded in
-- the same transaction as its request row, after Stripe answered.
CREATE TABLE stripe_steps (
    number           VARCHAR NOT NULL,      -- gpumeter invoice / credit note number
    step             VARCHAR NOT NULL,      -- invoice | item:<n> | item:vat | finalize | credit_note
    idempotency_key  VARCHAR,               -- key used, NULL when adopted from a Stripe listing
    stripe_object_id VARCHAR NOT NULL,
    amount_cents     BIGINT,                -- EUR cents, for items and credit notes
    done_at          TIMESTAMPTZ NOT NULL,  -- UTC
    PRIMARY KEY (number, step)
);

-- Tenant id -> Stripe customer id, for customers gpumeter created or found.
CREATE TABLE stripe_customers (
    tenant             VARCHAR PRIMARY KEY,
    stripe_customer_id VARCHAR NOT NULL,
    source             VARCHAR NOT NULL,    -- tenants.csv | created | found
    recorded_at        TIMESTAMPTZ NOT NULL -- UTC
);

-- One row per gpumeter document pushed to Stripe, with its latest known state.
CREATE TABLE stripe_documents (
    number             VARCHAR PRIMARY KEY, -- gpumeter invoice / credit note number
    kind               VARCHAR NOT NULL,    -- invoice | credit_note
    tenant             VARCHAR NOT NULL,
    period             VARCHAR NOT NULL,    -- YYYY-MM (UTC calendar month)
    references_number  VARCHAR,             -- credit note: the invoice it corrects
    stripe_customer_id VARCHAR NOT NULL,
    stripe_id          VARCHAR NOT NULL,    -- in_… (invoice) or cn_… (credit note)
    total_cents        BIGINT NOT NULL,     -- EUR cents incl. VAT, as on the legal document (positive)
    stripe_status      VARCHAR NOT NULL,    -- Stripe's status: draft | open | paid | void | uncollectible | issued
    stripe_status_at   TIMESTAMPTZ NOT NULL,-- UTC, when gpumeter last read it from Stripe
    payment_status     VARCHAR,             -- from webhooks: paid | payment_failed
    payment_status_at  TIMESTAMPTZ          -- UTC, Stripe's time of the event that set it
);

-- Webhook events received and verified; the event id makes replays a no-op.
CREATE TABLE stripe_events (
    event_id      VARCHAR PRIMARY KEY,      -- evt_…
    type          VARCHAR NOT NULL,         -- invoice.paid | invoice.payment_failed
    stripe_id     VARCHAR,                  -- the invoice the event is about
    number        VARCHAR,                  -- its gpumeter number, when known
    created_at    TIMESTAMPTZ NOT NULL,     -- UTC, Stripe's event time
    received_at   TIMESTAMPTZ NOT NULL      -- UTC
);
