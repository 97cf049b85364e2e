"""The pages for people, rendered by headless Chromium against a real gunicorn: Swagger UI at
/docs draws every operation of openapi.yaml, the model card page shows its two plots, with no
console error and no request leaving the service."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chromium import open_page
from tests.contract.spec import METHODS
from tests.server import REPO, gunicorn

pytestmark = pytest.mark.slow


def _only_our_server(requested: list[str], base: str) -> None:
    outside = [u for u in requested if not (u.startswith(base) or u.startswith("data:"))]
    assert not outside, f"requests that left the service: {outside}"


def test_swagger_ui_and_model_card_pages_render_offline(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "openapi.yaml").read_text())
    operations = sum(1 for item in spec["paths"].values() for method in item if method in METHODS)
    with gunicorn(tmp_path, workers=1) as server:
        docs = open_page(
            f"{server.url}/docs",
            "document.querySelectorAll('.opblock').length >= 1 && "
            "[document.querySelectorAll('.opblock').length, "
            "document.querySelector('.info .title').textContent]",
        )
        card = open_page(
            f"{server.url}/v1/models/ich/card.html",
            "document.images.length === 2 && Array.from(document.images).every("
            "i => i.complete && i.naturalWidth > 0) && "
            "Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.naturalHeight])",
        )
    count, title = docs.result
    assert count == operations and title.startswith("ECMO Risk Service")
    assert [alt for alt, _, _ in card.result] == ["ROC curve", "Calibration plot"]
    assert all(w > 100 and h > 100 for _, w, h in card.result)
    for name, visit in (("docs", docs), ("card", card)):
        assert not visit.errors, f"{name}: {visit.errors}"
        _only_our_server(visit.requested, server.url)
        assert visit.screenshot.startswith(b"\x89PNG") and len(visit.screenshot) > 10_000
        (tmp_path / f"{name}.png").write_bytes(visit.screenshot)
    assert any(u.endswith("/openapi.yaml") for u in docs.requested)
    assert sum("/plots/" in u for u in card.requested) == 2
