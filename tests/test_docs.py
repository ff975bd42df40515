"""The documentation names what exists, so it cannot drift from the tree again.

- every connected system's location variable and credential variables, as the registry
  declares them, are documented in docs/configuration.md;
- every repository file path written in backticks in README.md, BENCHMARKS.md and docs/*.md
  (a path under one of the repository's folders, ending in `/` or a file extension) exists,
  in the repository or, for the add-a-system walkthrough's files, in `docs/examples/new_system/`;
- every relative link in those pages points at a file that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from integration_hub import systems

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "new_system"  # laid out like the repository
PAGES = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")])
FOLDERS = (
    "integration_hub/",
    "assets/",
    "resources/",
    "canonical/",
    "sandbox/",
    "bench/",
    "tests/",
    "dbt_like_sql/",
    "docs/",
)
FILE = re.compile(r"\.(py|sql|md|toml|json|csv|yaml|yml)$")
PLACEHOLDER = re.compile(r"[<>*{}…$|]")  # `staging/<system>__<entity>.sql`, `raw_*.*`: a pattern, not a path
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (commands and sample code name no repository file)."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)


def _paths(page: Path) -> list[str]:
    found = []
    for span in CODE_SPAN.findall(_prose(page)):
        if " " in span or PLACEHOLDER.search(span) or not span.startswith(FOLDERS):
            continue
        if span.endswith("/") or FILE.search(span):
            found.append(span)
    return found


def _exists(path: str) -> bool:
    return (ROOT / path).exists() or (EXAMPLE / path).exists()


def test_every_system_variable_is_documented_in_the_configuration_page():
    page = (ROOT / "docs" / "configuration.md").read_text()
    declared = {
        name: [system.url_var, *(c.var for c in system.credentials.values())]
        for name, system in systems.registry().items()
    }
    assert set(declared) >= {"erp", "crm", "shop", "billing", "support", "marketing", "payments"}
    missing = [
        f"{name}: {var}" for name, variables in declared.items() for var in variables if var not in page
    ]
    assert not missing, "docs/configuration.md does not mention:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_in_backticks_exists(page):
    paths = _paths(page)
    missing = sorted({p for p in paths if not _exists(p)})
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(page):
    targets = [t for t in LINK.findall(_prose(page)) if not re.match(r"[a-z]+:|#", t)]
    missing = sorted({t for t in targets if not (page.parent / t.split("#")[0]).exists()})
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist:\n" + "\n".join(missing)


def test_the_path_check_sees_the_pages_paths():
    """Guards the check itself: the pages do name files it recognises, and a moved one is caught."""
    named = {p for page in PAGES for p in _paths(page)}
    assert {"integration_hub/systems/__init__.py", "assets/syncs.py", "tests/test_add_a_system.py"} <= named
    assert "integration_hub/systems/pos.py" in named, "the walkthrough's module, found in docs/examples"
    assert not _exists("integration_hub/adapters/crm.py")
