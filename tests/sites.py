"""A gpumeter site on disk for tests: gpumeter.toml plus inventory files."""

from __future__ import annotations

from pathlib import Path

NODES = """hostname,site,country,provider
fr-par-gpu01,par1,FR,gpumeter-sim
fr-par-gpu02,par1,FR,gpumeter-sim
de-fra-gpu01,fra1,DE,gpumeter-sim
nl-ams-gpu01,ams1,NL,gpumeter-sim
fi-hel-gpu01,hel1,FI,gpumeter-sim
it-mil-gpu01,mil1,IT,gpumeter-sim
it-mil-gpu02,mil1,IT,gpumeter-sim
us-ash-gpu01,ash1,US,gpumeter-sim
"""
STORAGE = """location,country
s3://eu-data,FR
s3://eu-data/archive,DE
nfs://filer-par/vol1,FR
s3://us-data,US
"""
TENANTS = """tenant,legal_name,country,vat_id,email
acme,ACME SAS,FR,FR40303265045,billing@acme.example
beta,Beta GmbH,DE,DE136695976,
gamma,Gamma Inc.,US,,
"""
JOBS = """job_id,tenant,project,data_locations
job-edge-1,acme,train,s3://eu-data/sets/a
job-edge-A,acme,train,s3://eu-data/sets/b
job-nan,acme,eval,nfs://filer-par/vol1/x
job-dup,beta,llm,s3://eu-data/archive/2026
job-ha,beta,llm,
job-outage,beta,llm,s3://eu-data
job-rename,gamma,vision,s3://us-data/imgs
"we""ird\\job name/é",gamma,vision,s3://nowhere/x
job-mig-3g,acme,mig,
job-mig-2g,acme,mig,
job-mig-1g,beta,mig,
job-a30-x,gamma,mig,
job-a30-y,gamma,mig,
job-share-1,acme,share,
job-share-2,beta,share,
job-month,acme,month,s3://eu-data
"""
RATES = """[[rate]]
model = "NVIDIA H100 80GB HBM3"
eur_per_gpu_hour = "2.80"

[[rate]]
model = "NVIDIA A100-SXM4-80GB"
eur_per_gpu_hour = "1.90"

[[rate]]
model = "NVIDIA A30"
eur_per_gpu_hour = "0.90"
mig_slices = 4
"""


def make_site(root: Path, prometheus_url: str, *, jobs: str = JOBS, nodes: str = NODES) -> Path:
    """Write a complete site under ``root``; returns the gpumeter.toml path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nodes.csv").write_text(nodes)
    (root / "storage.csv").write_text(STORAGE)
    (root / "tenants.csv").write_text(TENANTS)
    (root / "jobs.csv").write_text(jobs)
    (root / "rates.toml").write_text(RATES)
    cfg = root / "gpumeter.toml"
    cfg.write_text(
        f"""[store]
database = "var/gpumeter.duckdb"

[telemetry]
prometheus_url = "{prometheus_url}"
scrape_interval = "15s"
job_label = "hpc_job"
idle_job_ids = ["", "0"]
timeout_s = 60
retries = 2

[inventory]
nodes = "nodes.csv"
storage = "storage.csv"
jobs = "jobs.csv"
tenants = "tenants.csv"

[billing]
rates = "rates.toml"
supplier = {{ legal_name = "GPU Cloud SAS", country = "FR", vat_id = "FR40303265045", \
address = "1 rue de la Paix", city = "Paris", postcode = "75002", siren = "303265045" }}
output = "var/invoices"

[audit]
origin = "gpumeter.test/audit"
signing_key = "keys/audit.key"
allowed_countries = ["EU"]
"""
    )
    return cfg
