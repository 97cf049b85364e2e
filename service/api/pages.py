"""Pages for people: Swagger UI for openapi.yaml at /docs, and each model card as HTML with its
ROC and calibration plots.

Everything is served by the service itself: Swagger UI's files come from the pinned swagger-ui-py
package (Swagger UI 5, which reads OpenAPI 3.1), so the pages work with no network access. Each
page carries a Content-Security-Policy that allows only this origin's scripts, styles and images.
"""

from __future__ import annotations

import functools
import html
import importlib.util
from pathlib import Path

from flask import Blueprint, Response, request
from markdown_it import MarkdownIt
from werkzeug.exceptions import NotFound

from service.api.body import requested_version
from service.api.deps import Deps
from service.core.registry import LoadedModel

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "openapi.yaml"
"""The contract, at the source root (the image copies it to /app)."""

# The Swagger UI files the /docs page uses, from the package's static directory.
SWAGGER_ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
CARD_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ECMO Risk Service API</title>
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="stylesheet" href="docs/assets/index.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

# Not Swagger UI's own swagger-initializer.js: that one loads the petstore from the internet.
DOCS_INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
});
"""

CARD_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Model card: {title}</title>
<link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1b1b1b; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }}
code {{ background: #f4f4f4; padding: 0 0.2rem; }}
img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
blockquote {{ border-left: 4px solid #c00; margin: 1rem 0; padding: 0.25rem 1rem; background: #fff4f4; }}
nav {{ font-size: 0.9rem; margin-bottom: 1rem; }}
</style>
</head>
<body>
<nav><a href="card?version={version}">Markdown</a> · <a href="../{name}?version={version}">manifest</a></nav>
{body}
</body>
</html>
"""


def swagger_static_dir() -> Path:
    """swagger-ui-py's static directory, found without importing the package (its __init__ imports
    every web framework adapter it has)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # CommonMark with GitHub-style tables; raw HTML in a card is shown as text, never run.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def card_html(model: LoadedModel, card: str) -> str:
    """The model card (Markdown) as an HTML page; images that name one of the model's plot files
    point at its plot route (relative to /v1/models/<name>/card.html)."""
    md = _markdown()
    tokens = md.parse(card)
    by_file = {path.name: name for name, path in model.plots.items()}
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if isinstance(src, str) and src in by_file:
                child.attrSet("src", f"plots/{by_file[src]}?version={model.version}")
    body = md.renderer.render(tokens, md.options, {})
    return CARD_PAGE.format(
        title=html.escape(f"{model.name} {model.version}"),
        name=html.escape(model.name),
        version=html.escape(model.version),
        body=body,
    )


def create_pages_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("pages", __name__)
    registry = deps.registry

    def page(text: str, mimetype: str, csp: str) -> Response:
        response = Response(text, mimetype=mimetype)
        response.headers["Content-Security-Policy"] = csp
        return response

    def file(path: Path, mimetype: str, max_age: int) -> Response:
        # Read whole (at most ~1.5 MB, rarely asked for): no open file is handed to the WSGI
        # server, and the bytes are whatever is on disk now.
        response = Response(path.read_bytes(), mimetype=mimetype)
        response.headers["Cache-Control"] = f"public, max-age={max_age}"
        return response

    @bp.get("/docs")
    def docs() -> Response:
        # Relative asset URLs: /docs (no trailing slash) resolves "docs/assets/x" to /docs/assets/x.
        return page(DOCS_PAGE, "text/html", DOCS_CSP)

    @bp.get("/docs/init.js")
    def docs_init() -> Response:
        return page(DOCS_INIT, "text/javascript", DOCS_CSP)

    @bp.get("/docs/assets/<asset>")
    def docs_asset(asset: str) -> Response:
        mimetype = SWAGGER_ASSETS.get(asset)
        if mimetype is None:
            raise NotFound(f"no documentation asset {asset!r}")
        return file(swagger_static_dir() / asset, mimetype, 86400)

    @bp.get("/openapi.yaml")
    def openapi() -> Response:
        if not OPENAPI_FILE.is_file():
            raise NotFound("openapi.yaml is not shipped with this installation")
        return file(OPENAPI_FILE, "application/yaml", 300)

    @bp.get("/v1/models/<name>/card.html")
    def card(name: str) -> Response:
        model = registry.get(name, requested_version(request))
        if model.card is None:
            raise NotFound(f"model {model.name} {model.version} ships no model card")
        return page(card_html(model, model.card), "text/html", CARD_CSP)

    @bp.get("/v1/models/<name>/plots/<plot>")
    def plot(name: str, plot: str) -> Response:
        model = registry.get(name, requested_version(request))
        path = model.plots.get(plot)
        if path is None:
            raise NotFound(
                f"model {model.name} {model.version} has no plot {plot!r}; "
                f"it has {sorted(model.plots) or 'none'}"
            )
        return file(path, "image/png", 3600)

    return bp
