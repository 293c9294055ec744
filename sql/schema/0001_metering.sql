-- 0001: inventory snapshots and metered usage.
-- All times are TIMESTAMPTZ in UTC; durations are integer nanoseconds; energy integer
-- microjoules. Integers keep sums exact and digests reproducible (docs/adr/0003-units.md).

CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);

-- One row per distinct content of an inventory file ever loaded.
CREATE TABLE inventory_versions (
    kind      VARCHAR NOT NULL,           -- nodes | storage | jobs | tenants
    version   INTEGER NOT NULL,           -- 1, 2, ... per kind
    sha256    VARCHAR NOT NULL,           -- hex digest of the file bytes
    loaded_at TIMESTAMPTZ NOT NULL,       -- UTC, when first loaded
    content   BLOB NOT NULL,              -- the exact file bytes
    PRIMARY KEY (kind, version)
);

CREATE TABLE nodes (
    version  INTEGER NOT NULL,            -- inventory_versions.version (kind 'nodes')
    hostname VARCHAR NOT NULL,
    site     VARCHAR NOT NULL,
    country  VARCHAR NOT NULL,            -- ISO 3166-1 alpha-2
    provider VARCHAR NOT NULL,
    PRIMARY KEY (version, hostname)
);

CREATE TABLE storage_locations (
    version  INTEGER NOT NULL,            -- inventory_versions.version (kind 'storage')
    location VARCHAR NOT NULL,            -- storage URI prefix
    country  VARCHAR NOT NULL,
    PRIMARY KEY (version, location)
);

-- The current jobs.csv and tenants.csv (replaced whole on each load).
CREATE TABLE jobs (
    job_id         VARCHAR PRIMARY KEY,
    tenant         VARCHAR NOT NULL,
    project        VARCHAR NOT NULL,
    data_locations VARCHAR[] NOT NULL
);

CREATE TABLE tenants (
    tenant          VARCHAR PRIMARY KEY,
    legal_name      VARCHAR NOT NULL,
    country         VARCHAR NOT NULL,
    vat_id          VARCHAR NOT NULL,
    email           VARCHAR,
    address         VARCHAR,
    stripe_customer VARCHAR
);

-- Usage per hour window x job x GPU (UUID, MIG instance).
CREATE TABLE usage (
    window_start TIMESTAMPTZ NOT NULL,    -- UTC, hour-aligned; window is [start, start+1h)
    job_id       VARCHAR NOT NULL,        -- job label value as Prometheus holds it
    uuid         VARCHAR NOT NULL,        -- physical GPU UUID (parent GPU for MIG)
    gpu_i_id     VARCHAR NOT NULL,        -- MIG GPU instance id, '' for a whole GPU
    mig_profile  VARCHAR,                 -- e.g. '3g.40gb', NULL for a whole GPU
    gpu_model    VARCHAR NOT NULL,        -- DCGM modelName
    hosts        VARCHAR[] NOT NULL,      -- sorted host label values seen
    gpu_ns       BIGINT NOT NULL,         -- held GPU time, nanoseconds (1/N when shared)
    busy_ns      BIGINT NOT NULL,         -- busy GPU time, nanoseconds
    energy_uj    BIGINT NOT NULL,         -- attributed energy, microjoules
    PRIMARY KEY (window_start, job_id, uuid, gpu_i_id)
);

-- Which windows have been metered, with a digest of their usage rows.
CREATE TABLE collected_windows (
    window_start  TIMESTAMPTZ PRIMARY KEY, -- UTC
    interval_ms   INTEGER NOT NULL,        -- scrape interval used
    rows          INTEGER NOT NULL,
    digest        VARCHAR NOT NULL,        -- sha256 hex over the window's usage rows
    nodes_version INTEGER,                 -- nodes inventory in force when metered
    backend       VARCHAR NOT NULL,        -- 'prometheus-closed' | 'prometheus-open' | 'simulated'
    collected_at  TIMESTAMPTZ NOT NULL     -- UTC
);

-- Per window, per physical GPU: which slots carried any sample (job or idle).
CREATE TABLE gpu_coverage (
    window_start  TIMESTAMPTZ NOT NULL,   -- UTC
    uuid          VARCHAR NOT NULL,
    hostname      VARCHAR NOT NULL,
    gpu_model     VARCHAR NOT NULL,
    first_slot    TIMESTAMPTZ NOT NULL,   -- start of the first slot with a sample
    last_slot     TIMESTAMPTZ NOT NULL,   -- start of the last slot with a sample
    slots_present INTEGER NOT NULL,
    PRIMARY KEY (window_start, uuid)
);

-- Stretches inside a window with no sample between slots that had one.
CREATE TABLE coverage_gaps (
    window_start TIMESTAMPTZ NOT NULL,    -- UTC
    uuid         VARCHAR NOT NULL,
    gap_start    TIMESTAMPTZ NOT NULL,    -- start of the first empty slot
    gap_end      TIMESTAMPTZ NOT NULL,    -- end of the last empty slot (exclusive)
    PRIMARY KEY (window_start, uuid, gap_start)
);
