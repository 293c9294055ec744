"""Static facts the simulated fleet is built from: sites, GPU models, MIG layouts, tenants.

Everything here is fictional except the shape of the facts: DCGM ``modelName`` strings,
MIG profile names and slice counts (NVIDIA MIG user guide, "Supported MIG Profiles"),
default-counters help texts, and VAT ids that pass python-stdnum's check digits (the FR ones
are computed: key = (12 + 3 × (SIREN mod 97)) mod 97 over a Luhn-valid SIREN).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    name: str
    country: str
    provider: str
    storage: tuple[str, ...]  # storage prefixes local to the site (storage.csv rows)
    subnet: int  # second octet of the site's 10.x.0.0/16 node network


@dataclass(frozen=True)
class Model:
    name: str  # DCGM modelName, spaces kept
    tdp_w: float
    idle_w: float
    eur_per_gpu_hour: str
    mig_slices: int | None  # compute slices when MIG-capable, else None
    mig_layouts: tuple[tuple[tuple[str, int], ...], ...]  # per layout: (profile, GPU_I_ID)


@dataclass(frozen=True)
class TenantFact:
    tenant: str
    legal_name: str
    country: str
    vat_id: str
    email: str
    address: str
    projects: tuple[str, ...]
    weight: float


# Order matters: the layout walks this cycle, so even a 7-node fleet covers FR, DE, NL, FI,
# IT and both non-EU sites (US, CH).
SITES: tuple[Site, ...] = (
    Site("par1", "FR", "Nuage Souverain (own DC, Paris)", ("s3://par1-datasets", "nfs://filer-par1/vol/projects"), 20),
    Site("fra1", "DE", "Rhein Colocation GmbH", ("s3://fra1-checkpoints",), 21),
    Site("ash1", "US", "Potomac Hosting LLC", ("s3://ash1-lake",), 40),
    Site("ams1", "NL", "Amstel Datacenters B.V.", ("nfs://filer-ams1/vol/scratch",), 22),
    Site("hel1", "FI", "Kaamos Compute Oy", ("s3://hel1-archive",), 23),
    Site("mil1", "IT", "Navigli Cloud S.p.A.", ("nfs://filer-mil1/vol/home",), 24),
    Site("zrh1", "CH", "Limmat Rechenzentrum AG", ("nfs://filer-zrh1/vol/research",), 41),
)
SITE_CYCLE: tuple[str, ...] = ("par1", "fra1", "ash1", "ams1", "hel1", "mil1", "zrh1", "par1", "fra1", "ams1")

# Storage that belongs to no site: a US replica bucket whose name starts like the Paris one
# (a longest-prefix trap: ``s3://par1-datasets`` must not cover ``s3://par1-datasets-replica``).
EXTRA_STORAGE: tuple[tuple[str, str], ...] = (("s3://par1-datasets-replica", "US"),)
FOREIGN_DATA: tuple[str, ...] = ("s3://par1-datasets-replica", "s3://ash1-lake")

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
A30 = "NVIDIA A30"
L40S = "NVIDIA L40S"

_A100_CLASS_LAYOUTS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("3g.40gb", 1), ("3g.40gb", 2)),
    (
        ("1g.10gb", 7),
        ("1g.10gb", 8),
        ("1g.10gb", 9),
        ("1g.10gb", 10),
        ("1g.10gb", 11),
        ("1g.10gb", 12),
        ("1g.10gb", 13),
    ),
    (("3g.40gb", 2), ("2g.20gb", 3), ("1g.10gb", 9), ("1g.10gb", 10)),
    (("7g.80gb", 0),),
)
_A30_LAYOUTS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("1g.6gb", 3), ("1g.6gb", 4), ("1g.6gb", 5), ("1g.6gb", 6)),
    (("2g.12gb", 1), ("1g.6gb", 5), ("1g.6gb", 6)),
    (("2g.12gb", 1), ("2g.12gb", 2)),
    (("4g.24gb", 0),),
)

MODELS: dict[str, Model] = {
    H100: Model(H100, 700.0, 72.0, "2.95", 7, _A100_CLASS_LAYOUTS),
    A100: Model(A100, 400.0, 56.0, "1.85", 7, _A100_CLASS_LAYOUTS),
    L40S: Model(L40S, 350.0, 34.0, "1.10", None, ()),
    A30: Model(A30, 165.0, 29.0, "0.65", 4, _A30_LAYOUTS),
}
MODEL_CYCLE: tuple[str, ...] = (H100, A100, L40S, A30)

# Typical PCI bus numbers of an 8-GPU HGX board.
PCI_BUSES: tuple[int, ...] = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)
DRIVERS: tuple[str, ...] = ("550.127.05", "550.127.05", "535.216.01")

TENANTS: tuple[TenantFact, ...] = (
    TenantFact(
        "atelier-lumiere",
        "Atelier Lumière SAS",
        "FR",
        "FR40303265045",
        "compta@atelier-lumiere.example.fr",
        "12 rue de la Verrerie, 75004 Paris",
        ("diffusion-v3", "rendu"),
        3.0,
    ),
    TenantFact(
        "armor-bio",
        "Armor Bio-Informatique SARL",
        "FR",
        "FR38524138765",
        "factures@armor-bio.example.fr",
        "4 quai Duguay-Trouin, 35000 Rennes",
        ("protein-fold",),
        2.0,
    ),
    TenantFact(
        "rhein-robotics",
        "Rhein Robotics GmbH",
        "DE",
        "DE136695976",
        "billing@rhein-robotics.example.de",
        "Rheinuferstraße 9, 40221 Düsseldorf",
        ("grasp-rl", "sim2real"),
        2.0,
    ),
    TenantFact(
        "polder-vision",
        "Polder Vision B.V.",
        "NL",
        "NL004495445B01",
        "ap@polder-vision.example.nl",
        "Keizersgracht 100, 1015 CV Amsterdam",
        ("seg-maps",),
        1.5,
    ),
    TenantFact(
        "laguna-lab",
        "Laguna Lab S.r.l.",
        "IT",
        "IT00743110157",
        "amministrazione@laguna-lab.example.it",
        "Fondamenta Nove 5, 30121 Venezia",
        ("nlp-it",),
        1.0,
    ),
    TenantFact(  # Belgian: Peppol by default, its address derived from the VAT id (0208)
        "meuse-analytics",
        "Meuse Analytics SRL",
        "BE",
        "BE0765432146",
        "facturation@meuse-analytics.example.be",
        "Quai de la Batte 10, 4000 Liège",
        ("weather-emu",),
        1.0,
    ),
    TenantFact(
        "prairie-ml",
        "Prairie ML Inc.",
        "US",
        "",
        "ap@prairie-ml.example.com",
        "100 Main Street, Lincoln, NE 68508",
        ("ads-ranker",),
        1.0,
    ),
    TenantFact(
        "alpen-quant",
        "Alpen Quant AG",
        "CH",
        "CHE-113.690.319 MWST",
        "buchhaltung@alpen-quant.example.ch",
        "Bahnhofstrasse 1, 8001 Zürich",
        ("risk-mc",),
        1.0,
    ),
)

# Tenants that take their invoices as Peppol BIS Billing 3.0 e-invoices (tenants.csv
# ``einvoice`` and ``peppol_id``): a German one (reverse charge) and a Swiss one (outside scope).
# The Belgian tenant needs neither column: Peppol is the default for BE, at ``0208:<its number>``.
PEPPOL_TENANTS: dict[str, str] = {
    "rhein-robotics": "9930:DE136695976",
    "alpen-quant": "0183:CHE113690319",
}

# The supplier (the cloud itself): a French SAS with a computed, valid SIREN and VAT id.
SUPPLIER: dict[str, str] = {
    "legal_name": "Nuage Souverain SAS",
    "country": "FR",
    "vat_id": "FR19812345676",
    "address": "8 rue des Serveurs",
    "city": "Paris",
    "postcode": "75013",
    "siren": "812345676",
    "legal_form": "SAS",
    "share_capital": "100000 EUR",
    "rcs": "RCS Paris 812 345 676",
    "email": "facturation@nuage-souverain.example.eu",
}

# Job ids a mapping file may hold that need escaping in exposition text and quoting in CSV:
# a double quote, a backslash, unicode, a comma and a semicolon, inner spaces (the
# inventory loader strips outer spaces, so none lead or trail).
ODD_JOB_IDS: tuple[str, ...] = (
    'ml "llama" run {n}',
    "C:\\scratch\\job {n}",
    "entraînement-北京 №{n}",
    "sweep a,b;c {n}",
)

HELP: dict[str, tuple[str, str]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("counter", "Total energy consumption since boot (in mJ)."),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gauge", "Ratio of time the graphics engine is active."),
}
