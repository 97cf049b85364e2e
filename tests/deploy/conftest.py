from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.server import REPO


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print past pytest's capture, so the request counts show in CI output without -s."""

    def write(line: str) -> None:
        with capsys.disabled():
            print(f"\n    {line}", flush=True)

    return write


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    """A private copy of the repository's models (tests may add versions to it)."""
    source = REPO / "models"
    if not any(source.glob("*/*/manifest.json")):
        pytest.fail(f"no models in {source}: train them first (python -m service.training)")
    target = tmp_path / "models"
    shutil.copytree(source, target)
    return target
