"""The import layers: each package imports only its own layer and the ones below.

::

    app            (CLI, demo, services)          may import everything below
    dashboards     (Streamlit pages)
    billing        (rates, VAT, invoices, Stripe)
    audit          (the signed log, bundles)
    metering       (telemetry -> usage)
    gpumeter       (core: config, store, errors, countries, months)

``simulator`` (the built-in fleet) stands beside the domains: it imports the core and
metering's sample model, and only the app (and tests) import it. Product code never imports
``tests``, ``testing`` or ``bench``, and never guards an import of a package that ships.
Imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("gpumeter", "metering", "audit", "billing", "dashboards", "app")
SIDE = {"simulator": {"gpumeter", "metering", "simulator"}}
PRODUCT = (*ORDER, *SIDE)
NOT_PRODUCT = {"tests", "testing", "bench"}


def allowed(package: str) -> set[str]:
    if package in SIDE:
        return SIDE[package]
    below = set(ORDER[: ORDER.index(package) + 1])
    if package == "app":
        below |= set(SIDE)
    return below


def modules() -> Iterator[tuple[str, Path]]:
    for package in PRODUCT:
        folder = ROOT / package
        if folder.is_dir():
            for path in sorted(folder.rglob("*.py")):
                yield package, path


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_every_layer_exists() -> None:
    assert [p for p in PRODUCT if not (ROOT / p / "__init__.py").is_file()] == []


@pytest.mark.parametrize("package", PRODUCT)
def test_imports_point_down(package: str) -> None:
    ours = set(PRODUCT) | NOT_PRODUCT
    wrong = []
    for owner, path in modules():
        if owner != package:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, name in imported(tree):
            top = name.split(".")[0]
            if top in ours and top not in allowed(package):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert wrong == [], f"{package} may import only {sorted(allowed(package))}"


def test_no_guarded_imports_of_shipped_packages() -> None:
    guarded = []
    for _, path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                if names & {"ImportError", "ModuleNotFoundError"}:
                    guarded.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert guarded == []


def test_no_dynamic_imports_in_product_code() -> None:
    found = []
    for _, path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in ("import_module", "__import__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_domains_do_not_import_the_app_or_its_cli() -> None:
    """Each domain builds its own typer.Typer; only the app mounts them."""
    for package, path in modules():
        if package == "app":
            continue
        names = {n for _, n in imported(ast.parse(path.read_text(encoding="utf-8")))}
        assert not {n for n in names if n.startswith("app")}, path


def test_the_layers_test_sees_a_violation(tmp_path: Path) -> None:
    """The walker finds an upward import inside a function, so a green run means something."""
    tree = ast.parse("def f():\n    from billing.run import invoice_month\n")
    tops = {name.split(".")[0] for _, name in imported(tree)}
    assert "billing" in tops and "billing" not in allowed("metering")
