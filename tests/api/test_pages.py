"""/docs (Swagger UI), /openapi.yaml, the model card as HTML and its plots, through the app.
(tests/test_pages_browser.py renders them in Chromium.)"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from service.app import create_app
from service.config import Settings
from tests.factories import write_model
from tests.server import REPO


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def model_with_card_and_plots(root: Path) -> None:
    out = write_model(root, "ich")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["plots"] = {"roc": "roc.png", "calibration": "calibration.png", "escape": "../x.png"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "roc.png").write_bytes(tiny_png())
    (out / "calibration.png").write_bytes(tiny_png())
    (out / "MODEL_CARD.md").write_text(
        "# Card\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "![ROC curve](roc.png)\n\n![Calibration](calibration.png)\n\n![elsewhere](https://x.invalid/a.png)\n"
    )


def test_docs_page_and_its_assets_are_served_by_the_service(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"docs/assets/{asset}" in html
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and len(r.data) > 1000
    init = client.get("/docs/init.js").get_data(as_text=True)
    assert 'url: "openapi.yaml"' in init and "petstore" not in init
    for name in ("swagger-initializer.js", "..%2F__init__.py", "index.html"):
        r = client.get(f"/docs/assets/{name}")
        assert r.status_code == 404 and r.mimetype == "application/problem+json"


def test_openapi_yaml_is_the_contract_file(client) -> None:
    r = client.get("/openapi.yaml")
    assert r.status_code == 200 and r.mimetype == "application/yaml"
    assert r.data == (REPO / "openapi.yaml").read_bytes()


def test_card_page_shows_the_plots_and_never_runs_html_from_the_card(tmp_path: Path) -> None:
    model_with_card_and_plots(tmp_path)
    with create_app(Settings(model_dir=tmp_path)).test_client() as c:
        r = c.get("/v1/models/ich/card.html")
        assert r.status_code == 200 and r.mimetype == "text/html"
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        html = r.get_data(as_text=True)
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert "<table>" in html
        assert '<img src="plots/roc?version=1.0.0" alt="ROC curve"' in html
        assert '<img src="plots/calibration?version=1.0.0"' in html
        for plot in ("roc", "calibration"):
            png = c.get(f"/v1/models/ich/plots/{plot}?version=1.0.0")
            assert png.status_code == 200 and png.mimetype == "image/png"
            assert png.data == tiny_png()
        # Only plain files in the version directory are plots; others are 404 problems.
        for plot in ("escape", "manifest", "nope"):
            missing = c.get(f"/v1/models/ich/plots/{plot}")
            assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
        assert c.get("/v1/models/nope/card.html").status_code == 404
