"""MIG slices (ADR 0007): one table of profiles, one share for energy and for money."""

from __future__ import annotations

import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from billing.errors import PricingError, RatesError
from billing.rates import parse_rates
from gpumeter.errors import InputError
from metering.mig import MigSlices, load_mig_slices, mig_slices_from, profile_slices
from metering.samples import ENERGY, GR_ACTIVE, sample_frame
from metering.semantics import meter
from tests.scenarios import HOUR, S, gpu_labels, ms, series

H100 = "NVIDIA H100 80GB HBM3"
CUSTOM = "Custom GPU"  # S = 4 from rates.toml

# (GPU_I_PROFILE, M): a holder of the instance has M of the model's S compute slices.
PROFILES = [
    ("1g.10gb", 1),
    ("1g.10gb+me", 1),
    ("1g.24gb-me", 1),
    ("2g.20gb", 2),
    ("3g.40gb", 3),
    ("1c.3g.40gb", 3),  # a compute instance holds its whole GPU instance: M, not N
    ("2c.3g.40gb", 3),
    ("2c.4g.40gb", 4),
    ("4g.40gb", 4),
    ("7g.80gb", 7),
]
NOT_PROFILES = [None, "", "whole", "0g.5gb", "3g", "g.10gb", "3c.40gb", "0c.3g.40gb", "x.3g.40gb", "MIG 3g.40gb"]

RATES = f"""
[[rate]]
model = "{H100}"
eur_per_gpu_hour = "2.80"
[[rate]]
model = "{CUSTOM}"
eur_per_gpu_hour = "1.00"
mig_slices = 4
[[rate]]
model = "{CUSTOM}"
site = "par1"
eur_per_gpu_hour = "1.10"
"""
SLICES = {H100: 7, CUSTOM: 4}


@pytest.mark.parametrize(("profile", "m"), PROFILES)
def test_profiles_count_their_gpu_instance_slices(profile: str, m: int) -> None:
    assert profile_slices(profile) == m


@pytest.mark.parametrize("text", NOT_PROFILES)
def test_what_is_not_a_profile(text: str | None) -> None:
    assert profile_slices(text) is None


def _energy_share(profile: str, model: str, slices: MigSlices) -> Fraction:
    """Energy metered to a job holding one MIG instance for an hour, over the GPU's energy."""
    a = ms("2026-10-01T00:00:00")
    ts = list(range(a - S, a + HOUR, S))
    lab = gpu_labels("GPU-71600000-0000-0000-0000-000000000001", model=model, gi="1", profile=profile)
    counter = [1e9 + 700.0 * i for i in range(len(ts))]  # +700 mJ per slot
    frame = sample_frame(
        [series(GR_ACTIVE, lab, "job-mig", ts, [0.5] * len(ts)), series(ENERGY, lab, "job-mig", ts, counter)],
        job_label="hpc_job",
    )
    usage = meter(frame, start_ms=a, end_ms=a + HOUR, interval_ms=S, mig_slices=slices).usage
    gpu_uj = (len(ts) - 1) * 700_000
    return Fraction(int(usage.get_column("energy_uj").sum()), gpu_uj)


@pytest.mark.parametrize(("profile", "m"), PROFILES)
@pytest.mark.parametrize("model", [H100, CUSTOM])
def test_energy_and_money_take_the_same_share(tmp_path: Path, profile: str, m: int, model: str) -> None:
    path = tmp_path / "rates.toml"
    path.write_text(RATES)
    card = parse_rates(RATES, file=path)
    slices = load_mig_slices(path)
    if m > SLICES[model]:
        with pytest.raises(PricingError, match="mig_slices"):
            card.resolve(model, profile, None, job="j")
        return
    share = Fraction(m, SLICES[model])
    for site in (None, "par1"):
        assert card.resolve(model, profile, site, job="j").factor == share
    assert _energy_share(profile, model, slices) == share


def test_one_reader_one_s_per_model(tmp_path: Path) -> None:
    """The rate card's S is the reader's, on every rate of the model (a site rate included)."""
    card = parse_rates(RATES, file="rates.toml")
    assert {r.model: r.mig_slices for r in card.rates} == SLICES
    assert [r.mig_slices for r in card.rates if r.model == CUSTOM] == [4, 4]
    assert mig_slices_from(tomllib.loads(RATES), RATES, file="rates.toml") == MigSlices({CUSTOM: 4})
    assert load_mig_slices(tmp_path / "absent.toml") == MigSlices()
    assert MigSlices()("NVIDIA A30") == 4 and MigSlices()(H100) == 7


def test_a_model_has_one_s(tmp_path: Path) -> None:
    text = RATES + f'[[rate]]\nmodel = "{CUSTOM}"\nsite = "fra1"\neur_per_gpu_hour = "1.20"\nmig_slices = 7\n'
    with pytest.raises(RatesError) as info:
        parse_rates(text, file="rates.toml")
    assert info.value.line == 17 and info.value.value == 7 and "#2" in info.value.message
    path = tmp_path / "rates.toml"
    path.write_text(text)
    with pytest.raises(InputError) as raw:
        load_mig_slices(path)
    assert (raw.value.file, raw.value.line, raw.value.message) == (str(path), 17, info.value.message)


def test_collect_refuses_a_rates_file_it_cannot_read_s_from(tmp_path: Path) -> None:
    path = tmp_path / "rates.toml"
    path.write_text('[[rate]]\nmodel = "X"\nmig_profile = "1g.10gb"\nmig_slices = 4\n')
    with pytest.raises(InputError, match="belongs on the GPU's rate") as info:
        load_mig_slices(path)
    assert info.value.line == 4
    path.write_text("[[rate]\n")
    with pytest.raises(InputError, match="not valid TOML") as info:
        load_mig_slices(path)
    assert info.value.file == str(path) and "line 1" in info.value.message
