"""gpumeter.toml is checked strictly: an unknown key or a wrong type is one error naming the
file, the line, the key and the value (hardening row 7), never a silent default."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from gpumeter.config import TABLES, load_config
from gpumeter.errors import ConfigError, Problems
from gpumeter.tomlschema import Kind

GPUMETER = str(Path(sys.executable).parent / "gpumeter")

# One key per table, with a plausible value of the right type: the base every case edits.
BASE = """\
[store]
database = "var/gpumeter.duckdb"

[telemetry]
prometheus_url = "http://127.0.0.1:9090"
scrape_interval = "15s"

[inventory]
nodes = "nodes.csv"

[billing]
rates = "rates.toml"

[billing.supplier]
legal_name = "Nuage GPU SAS"
country = "FR"

[audit]
origin = "gpumeter.test/audit"

[dashboard]
oidc = false
"""


def load(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpumeter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def add_to(table: str, line: str) -> str:
    """BASE with ``line`` as the first key of ``[table]`` (replacing the key where BASE sets it)."""
    header = f"[{table}]\n"
    assert header in BASE, table
    key = line.split(" =")[0]
    base = "".join(ln for ln in BASE.splitlines(keepends=True) if not ln.startswith(f"{key} ="))
    return base.replace(header, header + line + "\n", 1)


def line_of(text: str, fragment: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), start=1) if fragment in ln)


def refused(tmp_path: Path, table: str, line: str) -> tuple[ConfigError, str]:
    """The error of BASE with ``line`` in ``[table]``, and the "file:line: " it must start with."""
    text = add_to(table, line)
    path = load(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return e.value, f"{path}:{line_of(text, line)}: "


def test_the_base_file_loads(tmp_path: Path) -> None:
    cfg = load_config(load(tmp_path, BASE))
    assert cfg.telemetry.scrape_interval_ms == 15_000
    assert cfg.billing.supplier.legal_name == "Nuage GPU SAS"


@pytest.mark.parametrize(
    ("table", "typo"),
    [
        ("store", 'databse = "elsewhere.duckdb"'),
        ("telemetry", 'scrape_intervall = "30s"'),
        ("inventory", 'job = "other-jobs.csv"'),
        ("billing", 'invoice_prefx = "INV"'),
        ("billing.supplier", 'vat = "FR40303265045"'),
        ("audit", 'allowed_country = ["EU", "CH"]'),
        ("dashboard", "odic = true"),
    ],
)
def test_an_unknown_key_is_refused_with_file_line_and_key(tmp_path: Path, table: str, typo: str) -> None:
    error, where = refused(tmp_path, table, typo)
    key = typo.split(" =")[0]
    message = error.explain()
    assert message.startswith(where)
    assert f"[{table}]" in message and f"unknown key {key!r}" in message
    assert "(known keys: " in message  # the user sees what was meant


def test_an_unknown_table_is_refused(tmp_path: Path) -> None:
    text = BASE + '\n[telemtry]\nprometheus_url = "http://10.0.0.1:9090"\n'
    with pytest.raises(ConfigError, match=r"unknown table \[telemtry\]") as e:
        load_config(load(tmp_path, text))
    assert e.value.line == line_of(text, "[telemtry]")


def test_a_table_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    text = 'store = "var/gpumeter.duckdb"\n'
    with pytest.raises(ConfigError, match=r"\[store\] must be a table, not a string") as e:
        load_config(load(tmp_path, text))
    assert e.value.line == 1 and e.value.value == "var/gpumeter.duckdb"


def test_kept_problems_are_every_refusal_and_each_refused_key_reads_as_its_default(tmp_path: Path) -> None:
    """``gpumeter check`` keeps the problems: all of them, in the file's order, the rest read."""
    text = add_to("store", 'databse = "other.duckdb"') + "\n[telemtry]\nretries = 9\n"
    text = text.replace('scrape_interval = "15s"', "scrape_interval = 15\nretries = -1\ntimeout_s = 7")
    problems = Problems(keep=True)
    cfg = load_config(load(tmp_path, text), problems)
    found = [(e.line, e.message.split(" (")[0]) for e in problems.found]
    assert found == [
        (line_of(text, "databse ="), "[store] unknown key 'databse' = 'other.duckdb'"),
        (
            line_of(text, "scrape_interval ="),
            "[telemetry] scrape_interval must be a duration such as '15s', not an integer",
        ),
        (line_of(text, "[telemtry]"), "unknown table [telemtry]"),
        (line_of(text, "retries ="), "[telemetry] retries must not be negative"),
    ]
    assert cfg.store.database == (tmp_path / "var/gpumeter.duckdb").resolve()  # the default, not the typo's
    assert (cfg.telemetry.scrape_interval_ms, cfg.telemetry.retries) == (15_000, 4)
    assert cfg.telemetry.timeout_s == 7.0  # a good value beside bad ones is read
    assert "telemtry" not in cfg.raw
    with pytest.raises(ConfigError, match="unknown key 'databse'"):  # without keeping: the first, raised
        load_config(tmp_path / "gpumeter.toml")


@pytest.mark.parametrize(
    ("table", "bad", "want"),
    [
        ("store", "database = 1", "must be a string, not an integer"),
        ("store", 'write_wait_s = "60"', "must be a number, not a string"),
        ("telemetry", 'retries = "4"', "must be a whole number, not a string"),
        ("telemetry", "timeout_s = true", "must be a number, not a boolean"),
        ("telemetry", 'idle_job_ids = "0"', "must be a list of strings, not a string"),
        ("telemetry", "idle_job_ids = ['', 0]", "must be a list of strings, not a list"),
        ("telemetry", "scrape_interval = 15", "must be a duration such as '15s', not an integer"),
        ("inventory", "nodes = ['a.csv']", "must be a string, not a list"),
        ("billing", "output = false", "must be a string, not a boolean"),
        ("billing.supplier", "siren = 812345676", "must be a string, not an integer"),
        ("billing.supplier", 'payment_terms_days = "30"', "must be a whole number, not a string"),
        ("audit", 'allowed_countries = "EU"', "must be a list of strings, not a string"),
        ("dashboard", 'oidc = "yes"', "must be true or false, not a string"),
    ],
)
def test_a_wrong_type_is_refused_with_file_line_key_and_value(tmp_path: Path, table: str, bad: str, want: str) -> None:
    error, where = refused(tmp_path, table, bad)
    key = bad.split(" =")[0]
    message = error.explain()
    assert message.startswith(f"{where}[{table}] {key} {want}"), message
    assert repr(error.value) in message or repr(error.value) in bad


# Keys of the features added after the first wave (serve, trust, dashboards, contracts, Peppol,
# alerts): accepted, and type-checked like the rest.
LATER_KEYS = [
    ("telemetry", 'settle = "10m"', "settle = 10"),
    ("telemetry", 'late_window = "6h"', 'late_window = "six hours"'),
    ("telemetry", "workers = 4", 'workers = "4"'),
    ("telemetry", 'query_url = "http://127.0.0.1:8481/select/0/prometheus"', "query_url = 8481"),
    ("telemetry", 'headers = { "X-Scope-OrgID" = "tenant-a" }', 'headers = { "X-Scope-OrgID" = 1 }'),
    ("telemetry", 'bearer_token_env = "GPUMETER_PROM_TOKEN"', "bearer_token_env = true"),
    ("audit", 'witnesses = [{ name = "w1", url = "http://127.0.0.1:7380", vkey = "w1+abcd+AQ" }]', 'witnesses = "w1"'),
    ("audit", "quorum = 0", "quorum = 1.5"),  # 0: no witness is listed here
    ("audit", 'tsa_url = "http://127.0.0.1:3180/tsa"', "tsa_url = []"),
    ("audit", 'tsa_cert = "keys/tsa.pem"', "tsa_cert = true"),
    ("audit", 'checkpoint_every = "1h"', "checkpoint_every = 3600"),
    ("dashboard", 'session_idle = "30m"', "session_idle = 30"),
    ("dashboard", 'trusted_proxy_header = "X-Forwarded-For"', "trusted_proxy_header = 1"),
    ("billing", 'contracts = "contracts.toml"', "contracts = 1"),
    ("billing.supplier", 'peppol_id = "0009:81234567600014"', "peppol_id = 9"),
    ("alerts", 'webhook_url = "https://hooks.example.eu/gpumeter"', "webhook_url = false"),
    ("alerts", "attempts = 3", "attempts = 2.5"),
]


@pytest.mark.parametrize(
    ("table", "good", "bad"), LATER_KEYS, ids=[f"{t}.{g.split(' =')[0]}" for t, g, _ in LATER_KEYS]
)
def test_keys_of_other_features_are_accepted_and_type_checked(tmp_path: Path, table: str, good: str, bad: str) -> None:
    base = BASE if f"[{table}]\n" in BASE else BASE + f"\n[{table}]\n"
    load_config(load(tmp_path, base.replace(f"[{table}]\n", f"[{table}]\n{good}\n", 1)))
    with pytest.raises(ConfigError, match=rf"\[{table}\] {bad.split(' =')[0]} must be "):
        load_config(load(tmp_path, base.replace(f"[{table}]\n", f"[{table}]\n{bad}\n", 1)))


def test_an_item_of_a_list_of_tables_names_its_position(tmp_path: Path) -> None:
    text = BASE.replace(
        "[audit]\n",
        '[audit]\nwitnesses = [\n  { name = "w1", url = "http://a", vkey = "k1" },\n'
        '  { name = "w2", url = "http://b", vkye = "k2" },\n]\n',
        1,
    )
    with pytest.raises(ConfigError, match=r"\[audit\.witnesses\[2\]\] unknown key 'vkye'"):
        load_config(load(tmp_path, text))
    text = BASE + '\n[[audit.witnesses]]\nname = "w1"\nurl = 7380\nvkey = "k1"\n'
    with pytest.raises(ConfigError, match=r"\[audit\.witnesses\[1\]\] url must be a string") as e:
        load_config(load(tmp_path, text))
    assert e.value.line == line_of(text, "url = 7380")


def test_every_documented_table_is_declared_once() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    for table, keys in TABLES.items():
        assert f"## `[{table}]`" in docs, table
        for key in keys:
            assert f"| `{key}` |" in docs, f"[{table}] {key} is not documented"


def test_the_cli_names_the_typo_in_one_line_and_exits_1(tmp_path: Path) -> None:
    text = BASE.replace("[store]\n", '[store]\ndatabse = "elsewhere.duckdb"\n')
    load(tmp_path, text)
    p = subprocess.run(
        [GPUMETER, "usage", "--month", "2026-10"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "gpumeter.toml:2: [store] unknown key 'databse'" in lines[0]
    assert not (tmp_path / "elsewhere.duckdb").exists() and not (tmp_path / "var").exists()


def test_an_unquoted_siren_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    load(tmp_path, BASE.replace("[billing.supplier]\n", "[billing.supplier]\nsiren = 812345676\n"))
    p = subprocess.run(
        [GPUMETER, "invoice", "--month", "2026-10"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr and "AttributeError" not in p.stderr
    assert "[billing.supplier] siren must be a string, not an integer (value 812345676)" in p.stderr


def test_no_key_of_the_file_is_made_for_a_secret() -> None:
    """Secrets come from the environment only (README, Security model): no declared key is
    named for one; a key that points at a secret names its environment variable (``*_env``)."""

    def names(keys: Mapping[str, Kind], prefix: str) -> Iterator[str]:
        for key, kind in keys.items():
            yield f"{prefix}.{key}"
            if kind.keys is not None:
                yield from names(kind.keys, f"{prefix}.{key}")

    every = [n for table, keys in TABLES.items() for n in names(keys, table)]
    assert "telemetry.bearer_token_env" in every and len(every) > 40
    words = ("secret", "password", "passphrase", "token", "api_key", "apikey", "credential")
    assert [n for n in every if any(w in n.lower() for w in words) and not n.endswith("_env")] == []
