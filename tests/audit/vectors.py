"""The public test vectors vendored in ``tests/data/`` (sources and licences: tests/data/README.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parent.parent / "data"


def vector(path: str) -> Any:
    return json.loads((VECTORS / path).read_text(encoding="utf-8"))


def vector_text(path: str) -> str:
    return (VECTORS / path).read_bytes().decode("utf-8")


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def json_files(folder: str) -> list[Path]:
    """Every JSON vector under ``folder``; fails loudly when the vectors are missing."""
    root = VECTORS / folder
    files = sorted(root.rglob("*.json"))
    if not files:
        pytest.fail(f"no test vectors under {root}")
    return files


def ids(files: list[Path]) -> list[str]:
    return [str(f.relative_to(VECTORS)) for f in files]
