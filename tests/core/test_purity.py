"""The domain core, subpackages included (core/kinds, core/fhir), must not import the web stack
(STYLE.md habit 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "service" / "core"
BANNED = ("flask", "werkzeug", "marshmallow", "prometheus_client")


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_web_framework(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & set(BANNED)


def test_the_subpackages_are_checked() -> None:
    checked = {str(p.relative_to(CORE)) for p in CORE.rglob("*.py")}
    assert {"kinds/weaning.py", "fhir/extract.py"} <= checked
