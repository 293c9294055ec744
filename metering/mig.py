"""MIG slices: how much of a GPU a MIG instance is (pure, but for :func:`load_mig_slices`).

One rule for energy (:mod:`metering.semantics`, :mod:`metering.collector`) and for money
(:mod:`billing.rates`), decided in docs/adr/0007-mig-slices.md:

* A MIG device is named ``[Nc.]Mg.<memory>[+…]``. ``Mg`` is its GPU instance: M of the
  model's S compute slices, with its memory. The optional ``Nc.`` prefix names a compute
  instance of N slices carved out of that GPU instance; compute instances of one GPU
  instance share its memory and engines, and DCGM reports the GPU instance
  (``GPU_I_ID``, ``GPU_I_PROFILE``).
* So a profile counts M slices, with or without ``Nc.``: ``1c.3g.40gb`` is 3, like
  ``3g.40gb``. Jobs on compute instances of one GPU instance hold that instance together
  and share it 1/N like any other co-holders.
* A holder of an M-slice instance gets M/S of its GPU's energy and is priced at M/S of its
  GPU's hourly rate. S is :func:`default_mig_slices` unless rates.toml sets ``mig_slices``
  for the model; :func:`mig_slices_from` is the one reader of that key (the rate card takes
  S from it), and a model has one S.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpumeter.errors import InputError, Problems, read_text, strict
from gpumeter.tomllines import header_lines, key_line

MAX_MIG_SLICES = 64

# [Nc.]Mg.<memory and variant>, e.g. 1g.10gb, 1g.10gb+me, 3g.40gb, 1c.3g.40gb, 1g.24gb-me
_PROFILE = re.compile(r"^(?:[1-9][0-9]*c\.)?(?P<m>[0-9]+)g\.[0-9A-Za-z.+_-]+$")


def profile_slices(profile: str | None) -> int | None:
    """M of a MIG profile ``[Nc.]Mg.*`` (the GPU instance's slices); None if not a profile."""
    if not profile:
        return None
    m = _PROFILE.match(profile.strip())
    if m is None:
        return None
    slices = int(m.group("m"))
    return slices if slices > 0 else None


def default_mig_slices(model: str) -> int:
    """S of a model rates.toml says nothing about: 4 when the name contains "A30", else 7 (SPEC)."""
    return 4 if "A30" in model else 7


@dataclass(frozen=True)
class MigSlices:
    """S per GPU model: what rates.toml sets, else :func:`default_mig_slices`."""

    explicit: Mapping[str, int] = field(default_factory=dict)

    def __call__(self, model: str) -> int:
        return self.explicit.get(model, default_mig_slices(model))


def mig_slices_from(
    doc: Mapping[str, Any], text: str, *, file: str | Path, problems: Problems | None = None
) -> MigSlices:
    """S per model from a parsed rates.toml (``doc``, with its ``text`` for line numbers).

    ``mig_slices`` must be a whole number from 1 to :data:`MAX_MIG_SLICES`, on a GPU's
    ``[[rate]]`` (not on a profile priced apart), and the same on every rate of a model. A
    mistake raises :class:`InputError` naming the file, the line and the value (or, with
    ``Problems(keep=True)``, is kept there and that value ignored); other keys are the rate
    card's business.
    """
    problems = strict(problems)
    tables = doc.get("rate", [])
    if not isinstance(tables, list):
        return MigSlices()
    starts = header_lines(text, "rate")
    explicit: dict[str, int] = {}
    first: dict[str, int] = {}
    for index, table in enumerate(tables, start=1):
        if not isinstance(table, dict) or "mig_slices" not in table:
            continue
        with problems.guard():
            _one_mig_slices(table, index, starts, text, file, explicit, first)
    return MigSlices(explicit)


def _one_mig_slices(
    table: Mapping[str, Any],
    index: int,
    starts: list[int],
    text: str,
    file: str | Path,
    explicit: dict[str, int],
    first: dict[str, int],
) -> None:
    """Check the ``mig_slices`` of ``[[rate]]`` #``index`` and record it in ``explicit``."""
    raw = table["mig_slices"]
    start = starts[index - 1] if index - 1 < len(starts) else None
    line = key_line(text, start, "mig_slices")
    model = table.get("model")
    where = f"[[rate]] #{index}" + (f" (model {model!r})" if isinstance(model, str) else "")
    if "mig_profile" in table:
        raise InputError(
            f"{where}: mig_slices belongs on the GPU's rate, not on a profile priced apart",
            file=file,
            line=line,
            value=raw,
        )
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_MIG_SLICES:
        raise InputError(
            f"{where}: mig_slices must be a whole number of compute slices between 1 and {MAX_MIG_SLICES}",
            file=file,
            line=line,
            value=raw,
        )
    if not isinstance(model, str):
        return  # a rate without a model prices nothing; the rate card says so
    model = model.strip()
    if model in explicit and explicit[model] != raw:
        raise InputError(
            f"{where}: mig_slices = {raw}, but [[rate]] #{first[model]} sets {explicit[model]} for the "
            "same model (a GPU model has one number of compute slices)",
            file=file,
            line=line,
            value=raw,
        )
    explicit[model] = raw
    first.setdefault(model, index)


def load_mig_slices(path: Path) -> MigSlices:
    """S per model from the rates file at ``path``; defaults when there is no such file.

    A site that only meters may have no rates.toml; one that has it gets energy split with
    the same S its invoices use, so a file that cannot be read is an error here too.
    """
    if not path.exists():  # no file (or a dangling link): nothing set, the defaults
        return MigSlices()
    text = read_text(path, "rates file")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise InputError(f"not valid TOML: {exc}", file=path, line=line if isinstance(line, int) else None) from exc
    return mig_slices_from(doc, text, file=path)
