"""Every third-party package the code imports is declared in pyproject.toml.

An import that only works because some other dependency happens to pull the package in
breaks the day that dependency drops it. So: product code may import only what
``[project] dependencies`` (or an optional extra) declares; tests and benchmarks may also
import the ``dev`` group. Module names are mapped to distributions by the installed
metadata (``PIL`` -> pillow, ``stdnum`` -> python-stdnum).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PRODUCT = tuple(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
FIRST_PARTY = {*PRODUCT, "tests", "testing", "bench"}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement such as ``factur-x>=3.0``."""
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert m, requirement
    return re.sub(r"[-_.]+", "-", m.group(0)).lower()


def _declared(*, dev: bool) -> set[str]:
    project = PYPROJECT["project"]
    names = {_name(r) for r in project["dependencies"]}
    names |= {_name(r) for extra in project.get("optional-dependencies", {}).values() for r in extra}
    if dev:
        names |= {_name(r) for r in PYPROJECT["dependency-groups"]["dev"] if isinstance(r, str)}
    return names


def _imports(folders: tuple[str, ...]) -> dict[str, str]:
    """Top-level third-party modules imported under ``folders`` -> one file importing it."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in FIRST_PARTY and top not in sys.stdlib_module_names:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _undeclared(folders: tuple[str, ...], *, dev: bool) -> list[str]:
    dists = packages_distributions()
    declared = _declared(dev=dev)
    problems = []
    for module, where in sorted(_imports(folders).items()):
        candidates = {_name(d) for d in dists.get(module, [])}
        if not candidates:
            problems.append(f"{module} (imported in {where}) is not installed")
        elif not candidates & declared:
            problems.append(f"{module} (imported in {where}) comes from {sorted(candidates)}, not declared")
    return problems


def test_product_code_imports_only_declared_dependencies() -> None:
    assert _undeclared(PRODUCT, dev=False) == []


def test_tests_and_benchmarks_import_only_declared_dependencies() -> None:
    assert _undeclared(("tests", "testing", "bench"), dev=True) == []


def test_the_check_sees_the_imports_it_judges() -> None:
    # Guards the test above against passing vacuously (an empty scan finds nothing wrong).
    found = _imports(PRODUCT)
    assert {"duckdb", "polars", "numpy", "PIL", "typer"} <= set(found)
