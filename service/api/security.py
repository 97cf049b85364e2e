"""Response security headers for every answer, and optional API keys for internal callers.

Headers (added in the app's after_request hook, see service/app.py):
- `X-Content-Type-Options: nosniff` on every answer;
- `Cache-Control: no-store` on every answer that does not set its own: predictions, errors that
  echo input values and CDS cards all carry clinical data. A view serving something cacheable
  (a static page) sets its own Cache-Control and keeps it;
- on `text/html` answers, HTML_CSP unless the view set its own Content-Security-Policy: pages
  added by blueprints (docs, card, "why") get a strict default without each one remembering it.

API keys (ECMO_API_KEYS_FILE, off when unset): every /v1 and /v2 request except the OIP health
probes needs `Authorization: Bearer <key>` with one of the file's keys (one per line; blank lines
and `#` comments ignored; at least MIN_KEY_LENGTH characters). Keys are compared as SHA-256
digests with hmac.compare_digest against every configured key, so neither the position of the
first wrong character nor which key matched shows in the time taken. CDS Hooks keep their own
JWT; /health and /metrics stay open for probes and scrapers (the chart's NetworkPolicy limits
who reaches them).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from flask import Flask, Response, request

from service.api.errors import problem
from service.config import ConfigError
from service.errors import FieldError

HTML_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
MIN_KEY_LENGTH = 32
PROTECTED_PREFIXES = ("/v1/", "/v2")
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


def add_security_headers(response: Response) -> None:
    headers = response.headers
    headers.add("X-Content-Type-Options", "nosniff")
    if "Cache-Control" not in headers:
        headers.add("Cache-Control", "no-store")
    if response.mimetype == "text/html" and "Content-Security-Policy" not in headers:
        headers.add("Content-Security-Policy", HTML_CSP)


def read_api_keys(path: Path) -> tuple[bytes, ...]:
    """The SHA-256 digests of the keys in `path`; ConfigError naming the setting otherwise."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ECMO_API_KEYS_FILE {path}: cannot be read: {exc}") from exc
    keys = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        raise ConfigError(f"ECMO_API_KEYS_FILE {path}: holds no key")
    if any(len(k) < MIN_KEY_LENGTH for k in keys):
        raise ConfigError(
            f"ECMO_API_KEYS_FILE {path}: every key needs at least {MIN_KEY_LENGTH} characters "
            "(e.g. `openssl rand -hex 32`)"
        )
    return tuple(hashlib.sha256(k.encode()).digest() for k in keys)


def key_matches(presented: str, digests: tuple[bytes, ...]) -> bool:
    candidate = hashlib.sha256(presented.encode()).digest()
    matched = False
    for digest in digests:  # no early exit: the time does not say which key matched
        matched |= hmac.compare_digest(candidate, digest)
    return matched


def require_api_keys(app: Flask, keys_file: Path) -> None:
    """Install the API-key check on /v1 and /v2 (called by create_app when the setting is set)."""
    digests = read_api_keys(keys_file)

    @app.before_request
    def _api_key() -> Response | None:
        path = request.path
        if not path.startswith(PROTECTED_PREFIXES) or path in OPEN_PATHS:
            return None
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key.strip() and key_matches(key.strip(), digests):
            return None
        reason = "an Authorization: Bearer <API key> header with a configured key is required"
        return problem(
            401,
            "unauthorized",
            "Unauthorized",
            f"the API key was refused: {reason}",
            [FieldError("Authorization", reason, "api_key")],
            headers={"WWW-Authenticate": 'Bearer realm="ecmo-risk"'},
        )
