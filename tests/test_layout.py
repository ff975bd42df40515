"""The tree keeps its shape: imports run one way, and each part imports only what it may.

Layers, top to bottom (a module imports its own layer or lower ones, never higher):

    cli → definitions → assets → resources → engine → systems → warehouse → settings → canonical

- the engine, the systems, the warehouse client and settings import no Dagster, not even
  through something they import (checked in a fresh interpreter);
- `canonical/` imports nothing of the hub;
- nothing in the product imports the sandbox (`hub_sandbox`), which imports the product;
- no import cycle: the layers' strict order rules one out between the product's packages (the
  top level `integration_hub/` holds both ends, the CLI and the engine, so the order is checked
  per sub-package), and the sandbox only imports the product.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    "integration_hub.cli",
    "integration_hub.definitions",
    "assets",
    "resources",
    "integration_hub.engine",
    "integration_hub.systems",
    "integration_hub.warehouse",
    "integration_hub.settings",
    "canonical",
]
PRODUCT = ("integration_hub", "assets", "resources", "canonical")
DAGSTER_FREE = ("integration_hub.engine", "integration_hub.systems", "integration_hub.warehouse", "canonical")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _layer(module: str) -> int | None:
    for rank, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None  # the package root (it only switches dlt's telemetry off) and third-party modules


def _product_files() -> list[Path]:
    return sorted(
        p for package in PRODUCT for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts
    )


def test_every_import_points_down_the_layers():
    upward = []
    for path in _product_files():
        module = _module(path)
        own = _layer(module)
        if module == "integration_hub":
            continue
        assert own is not None, f"{module} belongs to no layer: add it to LAYERS in this test and the docs"
        for target in _imports(path):
            rank = _layer(target)
            if rank is not None and rank < own and not module.startswith(target + "."):
                upward.append(f"{module} imports {target} ({LAYERS[own]} may not import {LAYERS[rank]})")
    assert not upward, "\n".join(sorted(set(upward)))


def test_canonical_imports_nothing_of_the_hub_and_the_product_never_the_sandbox():
    bad = []
    for path in _product_files():
        module = _module(path)
        for target in _imports(path):
            if target.split(".")[0] == "hub_sandbox":
                bad.append(f"{module} imports the sandbox ({target})")
            if module.startswith("canonical") and target.split(".")[0] in PRODUCT[:-1]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_cycle_between_packages():
    """Between the layers' packages a strict order (above) rules cycles out; here the sandbox, a
    package of its own, is checked to sit on top: it imports the product, never the reverse."""
    sandbox_imports = {
        target.split(".")[0]
        for p in sorted((ROOT / "sandbox" / "hub_sandbox").rglob("*.py"))
        for target in _imports(p)
    }
    product_imports = {target.split(".")[0] for p in _product_files() for target in _imports(p)}
    assert "integration_hub" in sandbox_imports
    assert "hub_sandbox" not in product_imports


def test_the_engine_and_the_systems_load_without_dagster():
    modules = [
        _module(p)
        for prefix in DAGSTER_FREE
        for p in sorted((ROOT / prefix.replace(".", "/")).rglob("*.py"))
        if "__pycache__" not in p.parts
    ]
    probe = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == [], "the engine, the systems or the warehouse client pulled in Dagster"


def test_modules_and_functions_stay_small():
    """About 400 lines a module (unless its docstring says why it is longer), 60 a function."""
    long_modules, long_functions = [], []
    for path in _product_files() + sorted((ROOT / "sandbox" / "hub_sandbox").rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        doc = ast.get_docstring(tree) or ""
        if len(text.splitlines()) > 420 and "Longer than" not in doc:
            long_modules.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                nested = sum(
                    child.end_lineno - child.lineno + 1
                    for child in ast.walk(node)
                    if child is not node and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                    and child in node.body
                )  # fmt: skip
                length = node.end_lineno - node.lineno + 1 - nested
                if length > 65:
                    long_functions.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines"
                    )
    assert not long_modules, "\n".join(long_modules)
    assert not long_functions, "\n".join(long_functions)
