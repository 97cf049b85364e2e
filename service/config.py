"""Settings: the only place that reads the environment. Fails fast, naming the bad key.

Every key has the ECMO_ prefix. PROMETHEUS_MULTIPROC_DIR keeps its standard name because
prometheus_client itself reads it at import time.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    model_dir: Path = REPO_MODELS_DIR
    """Directory of <name>/<version>/manifest.json; mount a hospital's models here."""
    default_versions: dict[str, str] = field(default_factory=dict)
    """name=version pins; otherwise the newest site-validated, else the oldest version (registry.py)."""
    max_batch: int = 1000
    """Most patients one batch request may carry."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Request bodies above this get 413."""
    ffp_ml_per_unit: float | None = None
    """mL per FFP bag; unset means FFP given in units is rejected."""
    log_level: str = "INFO"
    multiproc_dir: Path | None = None
    """PROMETHEUS_MULTIPROC_DIR: set under gunicorn with several workers."""
    # gunicorn (read by service/gunicorn_conf.py through this same loader)
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 1
    timeout: int = 30
    graceful_timeout: int = 30
    keepalive: int = 5
    max_requests: int = 0
    """Recycle a worker after this many requests (0: never); with max_requests_jitter."""
    max_requests_jitter: int = 0
    # The process model (service/gunicorn_conf.py, service/front.py, service/ops.py)
    proxy: str = "nginx"
    """nginx: a buffering nginx listens on `bind` and hands gunicorn only complete requests;
    off: gunicorn listens on `bind` itself (slow clients can then hold its workers)."""
    client_timeout: int = 10
    """nginx: seconds a client may take between two reads of its headers or body (else 408)."""
    metrics_bind: str | None = None
    """host:port of the gunicorn master's own listener for /metrics and /health/live; when set,
    /metrics is no longer served on `bind`."""
    # CDS Hooks
    public_base_url: str | None = None
    """Base URL the EHR calls: the JWT audience is this + the path called. Required when JWT
    verification is on: the audience is never derived from the request (its Host header)."""
    cds_jwt_required: bool = False
    cds_jwks_file: Path | None = None
    cds_jwks_urls: tuple[str, ...] = ()
    """Allowlisted JWK Set URLs (a token's jku must be one of them)."""
    cds_allowed_issuers: tuple[str, ...] = ()
    cds_clock_skew_seconds: int = 60
    cds_max_token_lifetime_seconds: int = 300
    """Tokens whose exp - iat exceeds this are refused (CDS Hooks recommends 5 minutes)."""
    cds_replay_dir: Path | None = None
    """Directory shared by the workers of a pod for jti replay protection; default
    <PROMETHEUS_MULTIPROC_DIR>/cds-jti; unset with no multiprocess dir: per process."""
    fhir_mapping_dir: Path | None = None
    """Per-model FHIR-to-feature mapping files; unset means the shipped defaults."""
    api_keys_file: Path | None = None
    """Keys internal callers must send on /v1 and /v2 (one a line); unset means no API keys."""
    # CDS Hooks "FHIR Resource Access" (service/fhir_fetch.py)
    fhir_server_allowlist: tuple[str, ...] = ()
    """Base URLs of FHIR servers the service may query for absent prefetch keys; empty: never."""
    fhir_allow_http: bool = False
    """Allow http:// FHIR servers (tests, a sidecar on localhost); https only otherwise."""
    fhir_timeout_seconds: float = 2.0
    """Timeout of one HTTP request to a FHIR server (connect, each read)."""
    fhir_deadline_seconds: float = 5.0
    """All FHIR requests of one CDS call together; must stay below the worker timeout."""
    fhir_max_pages: int = 5
    """Most searchset pages (next links) read per prefetch key."""
    # "Why this risk" page (service/api/why.py)
    explain_keys: tuple[str, ...] = field(default=(), repr=False)
    """Fernet keys for the page's tokens: the first encrypts, all decrypt (rotation). Secret."""
    explain_ttl_seconds: int = 3600
    """How long a card's page link works."""


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{key}={raw!r} is not an integer") from exc
    if not low <= value <= high:
        raise ConfigError(f"{key}={value} must be between {low} and {high}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}={raw!r} is not a boolean (true/false)")


def _list(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(key, "").split(",") if p.strip())


def _host_port(key: str, raw: str) -> tuple[str, int]:
    """host:port (a TCP address; IPv6 hosts in brackets)."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}={raw!r} is not host:port")
    return host, int(port)


def _float(env: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{key}={raw!r} is not a number") from exc
    if not low <= value <= high:
        raise ConfigError(f"{key}={value:g} must be between {low:g} and {high:g}")
    return value


def _fhir_allowlist(env: Mapping[str, str], allow_http: bool) -> tuple[str, ...]:
    urls = _list(env, "ECMO_FHIR_SERVER_ALLOWLIST")
    for url in urls:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "@" in rest.split("/")[0]:
            raise ConfigError(f"ECMO_FHIR_SERVER_ALLOWLIST item {url!r} is not an http(s) base URL")
        if scheme == "http" and not allow_http:
            raise ConfigError(
                f"ECMO_FHIR_SERVER_ALLOWLIST item {url!r} is http: set ECMO_FHIR_ALLOW_HTTP=true "
                "(tests only) or use https"
            )
    return urls


def _explain_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    keys = _list(env, "ECMO_EXPLAIN_KEYS")
    for i, key in enumerate(keys):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32:
            # the value itself is a secret: name its position, never print it
            raise ConfigError(
                f"ECMO_EXPLAIN_KEYS item {i + 1} is not a Fernet key (32 url-safe base64 bytes)"
            )
    return keys


def _path(env: Mapping[str, str], key: str) -> Path | None:
    raw = env.get(key)
    return Path(raw) if raw else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    pins: dict[str, str] = {}
    for item in _list(env, "ECMO_DEFAULT_VERSIONS"):
        name, sep, version = item.partition("=")
        if not sep or not name or not version:
            raise ConfigError(f"ECMO_DEFAULT_VERSIONS item {item!r} is not name=version")
        pins[name.strip()] = version.strip()
    ffp_raw = env.get("ECMO_FFP_ML_PER_UNIT")
    ffp: float | None = None
    if ffp_raw:
        try:
            ffp = float(ffp_raw)
        except ValueError as exc:
            raise ConfigError(f"ECMO_FFP_ML_PER_UNIT={ffp_raw!r} is not a number") from exc
        if not 50 <= ffp <= 1000:
            raise ConfigError("ECMO_FFP_ML_PER_UNIT must be between 50 and 1000 mL")
    proxy = env.get("ECMO_PROXY") or "nginx"
    if proxy not in ("nginx", "off"):
        raise ConfigError(f"ECMO_PROXY={proxy!r} is not nginx or off")
    bind = env.get("ECMO_BIND") or "127.0.0.1:8000"
    metrics_bind = env.get("ECMO_METRICS_BIND") or None
    for key, value in (("ECMO_BIND", bind), ("ECMO_METRICS_BIND", metrics_bind)):
        if value is not None:
            _host_port(key, value)
    if metrics_bind is not None and _host_port("", metrics_bind) == _host_port("", bind):
        raise ConfigError("ECMO_METRICS_BIND must differ from ECMO_BIND")
    log_level = env.get("ECMO_LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"ECMO_LOG_LEVEL={log_level!r} is not DEBUG, INFO, WARNING or ERROR")
    cds_jwt_required = _bool(env, "ECMO_CDS_JWT_REQUIRED", False)
    jwks_file = _path(env, "ECMO_CDS_JWKS_FILE")
    jwks_urls = _list(env, "ECMO_CDS_JWKS_URLS")
    issuers = _list(env, "ECMO_CDS_ALLOWED_ISSUERS")
    if cds_jwt_required and not (jwks_file or jwks_urls):
        raise ConfigError("ECMO_CDS_JWT_REQUIRED needs ECMO_CDS_JWKS_FILE or ECMO_CDS_JWKS_URLS")
    if cds_jwt_required and not issuers:
        raise ConfigError("ECMO_CDS_JWT_REQUIRED needs ECMO_CDS_ALLOWED_ISSUERS")
    public_base_url = env.get("ECMO_PUBLIC_BASE_URL") or None
    if public_base_url is not None:
        parts = urlsplit(public_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"ECMO_PUBLIC_BASE_URL={public_base_url!r} is not an absolute http(s) URL"
            )
    if cds_jwt_required and public_base_url is None:
        raise ConfigError(
            "ECMO_CDS_JWT_REQUIRED needs ECMO_PUBLIC_BASE_URL (the URL the EHR calls): the JWT "
            "audience is never taken from the request's Host header"
        )
    fhir_allow_http = _bool(env, "ECMO_FHIR_ALLOW_HTTP", False)
    timeout = _int(env, "ECMO_TIMEOUT", 30, 1, 3600)
    fhir_deadline = _float(env, "ECMO_FHIR_DEADLINE_SECONDS", 5.0, 0.1, 60.0)
    if fhir_deadline >= timeout:
        raise ConfigError(
            f"ECMO_FHIR_DEADLINE_SECONDS={fhir_deadline:g} must be below ECMO_TIMEOUT={timeout} "
            "(the worker would be killed while it waits for the FHIR server)"
        )
    multiproc = _path(env, "PROMETHEUS_MULTIPROC_DIR")
    return Settings(
        model_dir=Path(env.get("ECMO_MODEL_DIR") or REPO_MODELS_DIR),
        default_versions=pins,
        max_batch=_int(env, "ECMO_MAX_BATCH", 1000, 1, 100_000),
        max_body_bytes=_int(env, "ECMO_MAX_BODY_BYTES", 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
        ffp_ml_per_unit=ffp,
        log_level=log_level,
        multiproc_dir=multiproc,
        bind=bind,
        workers=_int(env, "ECMO_WORKERS", 2, 1, 64),
        threads=_int(env, "ECMO_THREADS", 1, 1, 64),
        timeout=timeout,
        graceful_timeout=_int(env, "ECMO_GRACEFUL_TIMEOUT", 30, 1, 3600),
        keepalive=_int(env, "ECMO_KEEPALIVE", 5, 0, 3600),
        max_requests=_int(env, "ECMO_MAX_REQUESTS", 0, 0, 10_000_000),
        max_requests_jitter=_int(env, "ECMO_MAX_REQUESTS_JITTER", 0, 0, 10_000_000),
        proxy=proxy,
        client_timeout=_int(env, "ECMO_CLIENT_TIMEOUT", 10, 1, 300),
        metrics_bind=metrics_bind,
        public_base_url=public_base_url,
        cds_jwt_required=cds_jwt_required,
        cds_jwks_file=jwks_file,
        cds_jwks_urls=jwks_urls,
        cds_allowed_issuers=issuers,
        cds_clock_skew_seconds=_int(env, "ECMO_CDS_CLOCK_SKEW_SECONDS", 60, 0, 600),
        cds_max_token_lifetime_seconds=_int(
            env, "ECMO_CDS_MAX_TOKEN_LIFETIME_SECONDS", 300, 1, 3600
        ),
        cds_replay_dir=_path(env, "ECMO_CDS_REPLAY_DIR")
        or (multiproc / "cds-jti" if multiproc else None),
        fhir_mapping_dir=_path(env, "ECMO_FHIR_MAPPING_DIR"),
        api_keys_file=_path(env, "ECMO_API_KEYS_FILE"),
        fhir_server_allowlist=_fhir_allowlist(env, fhir_allow_http),
        fhir_allow_http=fhir_allow_http,
        fhir_timeout_seconds=_float(env, "ECMO_FHIR_TIMEOUT_SECONDS", 2.0, 0.05, 30.0),
        fhir_deadline_seconds=fhir_deadline,
        fhir_max_pages=_int(env, "ECMO_FHIR_MAX_PAGES", 5, 1, 100),
        explain_keys=_explain_keys(env),
        explain_ttl_seconds=_int(env, "ECMO_EXPLAIN_TTL_SECONDS", 3600, 60, 7 * 24 * 3600),
    )
