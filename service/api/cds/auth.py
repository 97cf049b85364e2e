"""Verify the JWT a CDS client (EHR) sends with every CDS Hooks call ("Trusting CDS Clients").

Rules, all configured through Settings:
- `Authorization: Bearer <JWS>`; header `alg` ES384 or RS384 only (`none`, HS*, and every other
  algorithm are refused before any key is looked at); `kid` required; `typ` required, "JWT".
- the signature is checked with the key named by `kid`: first the keys of ECMO_CDS_JWKS_FILE,
  whatever the token's `jku` says; else a JWK Set URL of ECMO_CDS_JWKS_URLS, fetched by PyJWT's
  PyJWKClient and cached (keys for 5 minutes; an unknown kid triggers one refetch). A `jku` is
  fetched only when it is one of ECMO_CDS_JWKS_URLS exactly.
- `iss` must be in ECMO_CDS_ALLOWED_ISSUERS; `aud` must equal the URL called, built from the
  configured ECMO_PUBLIC_BASE_URL + path (required: never from the request's Host header, which
  the caller chooses); `exp`, `iat` and `jti` are
  required; `exp`/`iat` are checked with ECMO_CDS_CLOCK_SKEW_SECONDS of leeway.
- `exp - iat` must not exceed ECMO_CDS_MAX_TOKEN_LIFETIME_SECONDS (default 300: the 5 minutes
  CDS Hooks recommends), so a replay window is short.
- a `jti` is accepted once per issuer until its token expires. The record is shared by every
  worker of a pod (SharedReplayCache: one O_EXCL file per token in ECMO_CDS_REPLAY_DIR, by
  default <PROMETHEUS_MULTIPROC_DIR>/cds-jti, the pod's emptyDir). It is not shared between pods:
  a token captured in transit could be replayed once at each other pod within its lifetime.
  Without either directory (one process) the record lives in the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from service.config import ConfigError, Settings
from service.errors import FieldError, Unauthorized

ALLOWED_ALGORITHMS = ("ES384", "RS384")
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
JWKS_CACHE_SECONDS = 300
JWKS_FETCH_TIMEOUT = 5


def _refuse(reason: str, rule: str = "invalid_token") -> Unauthorized:
    return Unauthorized(
        f"the bearer token was refused: {reason}", [FieldError("Authorization", reason, rule)]
    )


class ReplayCache:
    """(iss, jti) seen, kept until the token's exp (+ leeway). Thread-safe, per process only:
    used when no shared directory is configured (one process, e.g. tests or ECMO_WORKERS=1)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            for key in [k for k, exp in self._seen.items() if exp < now]:
                del self._seen[key]
            if (issuer, jti) in self._seen:
                return False
            self._seen[(issuer, jti)] = expires_at
            return True


class SharedReplayCache:
    """(iss, jti) seen, shared by every process that uses the same directory (the workers of a
    pod: a subdirectory of the pod's PROMETHEUS_MULTIPROC_DIR emptyDir, or ECMO_CDS_REPLAY_DIR).

    One file per token, created with O_CREAT | O_EXCL: the kernel lets exactly one process create
    it, so a token is accepted once whichever worker sees it first. The file's name is a SHA-256
    of (iss, jti) and its mtime is the token's expiry; expired files are removed (at most once a
    minute per process). Nothing about the patient is stored.
    """

    SWEEP_SECONDS = 60.0

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock
        self._next_sweep = 0.0
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"CDS replay directory {directory}: {exc}") from exc

    def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._sweep(now)
        name = hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()
        path = self.directory / name
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                try:
                    if path.stat().st_mtime >= now:
                        return False
                    path.unlink()  # an expired entry not swept yet: the jti is free again
                except FileNotFoundError:
                    pass
                continue
            os.close(fd)
            os.utime(path, (expires_at, expires_at))
            return True
        return False

    def _sweep(self, now: float) -> None:
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    if entry.is_file() and entry.stat().st_mtime < now:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    continue


# The key type each accepted algorithm signs with (RFC 7518 section 3.1).
KEY_TYPES = {"ES384": "EC", "RS384": "RSA"}


def _for_algorithm(key: PyJWK, alg: str) -> PyJWK:
    """The key bound to the token's algorithm. "alg" is optional in a JWK, and PyJWT takes an RSA
    key without it for RS256, which refused a correctly signed RS384 token. A key that does not
    name its algorithm is taken for the header's when its key type signs with it; a key that
    names one keeps it, and PyJWT refuses a token of any other algorithm."""
    # PyJWK keeps the JWK as given (the only place that says whether "alg" was written).
    declared = getattr(key, "_jwk_data", {}).get("alg")
    if declared is None and key.key_type == KEY_TYPES[alg] and key.algorithm_name != alg:
        return PyJWK(key._jwk_data, algorithm=alg)
    return key


class CdsTokenVerifier:
    def __init__(
        self,
        issuers: Sequence[str],
        jwks_file: Path | None = None,
        jwks_urls: Sequence[str] = (),
        clock_skew_seconds: int = 60,
        jwk_client: Callable[[str], PyJWKClient] | None = None,
        max_lifetime_seconds: int = 300,
        replay_dir: Path | None = None,
    ) -> None:
        if not issuers:
            raise ConfigError("CDS JWT verification needs ECMO_CDS_ALLOWED_ISSUERS")
        if jwks_file is None and not jwks_urls:
            raise ConfigError("CDS JWT verification needs ECMO_CDS_JWKS_FILE or ECMO_CDS_JWKS_URLS")
        self.issuers = frozenset(issuers)
        self.skew = clock_skew_seconds
        self.file_keys: dict[str, PyJWK] = {}
        if jwks_file is not None:
            try:
                keyset = PyJWKSet.from_dict(json.loads(jwks_file.read_text("utf-8")))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ConfigError(
                    f"ECMO_CDS_JWKS_FILE {jwks_file}: not a usable JWK Set: {exc}"
                ) from exc
            self.file_keys = {k.key_id: k for k in keyset.keys if k.key_id}
            if not self.file_keys:
                raise ConfigError(f"ECMO_CDS_JWKS_FILE {jwks_file}: no key has a kid")
        make = jwk_client or (
            lambda url: PyJWKClient(
                url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=JWKS_FETCH_TIMEOUT
            )
        )
        self.clients: dict[str, PyJWKClient] = {url: make(url) for url in jwks_urls}
        self.max_lifetime = max_lifetime_seconds
        self.replays: ReplayCache | SharedReplayCache = (
            SharedReplayCache(replay_dir) if replay_dir is not None else ReplayCache()
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> CdsTokenVerifier | None:
        """None when verification is off (ECMO_CDS_JWT_REQUIRED=false)."""
        if not settings.cds_jwt_required:
            return None
        if not settings.public_base_url:
            raise ConfigError(
                "ECMO_CDS_JWT_REQUIRED needs ECMO_PUBLIC_BASE_URL (the URL the EHR calls): the "
                "JWT audience is never taken from the request's Host header"
            )
        return cls(
            settings.cds_allowed_issuers,
            settings.cds_jwks_file,
            settings.cds_jwks_urls,
            settings.cds_clock_skew_seconds,
            max_lifetime_seconds=settings.cds_max_token_lifetime_seconds,
            replay_dir=settings.cds_replay_dir,
        )

    def _key(self, header: dict[str, Any]) -> PyJWK:
        """The verification key, found by kid. A configured key (ECMO_CDS_JWKS_FILE) is used
        whatever the token's jku says: the CDS Hooks sandbox, for one, always sends a jku, and
        a jku is only a hint where the key may be published. A jku is fetched only when it is
        one of the allowlisted URLs (ECMO_CDS_JWKS_URLS), never because a token names it."""
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refuse("the JWT header has no kid")
        key = self.file_keys.get(kid)
        if key is not None:
            return key
        jku = header.get("jku")
        if jku is not None:
            client = self.clients.get(jku) if isinstance(jku, str) else None
            if client is None:
                raise _refuse(
                    f"no configured key has kid {kid!r}, and jku {jku!r} is not an allowlisted "
                    "JWK Set URL",
                    "jku",
                )
            clients = [client]
        else:
            clients = list(self.clients.values())
        for c in clients:
            try:
                return c.get_signing_key(kid)
            except jwt.PyJWKClientConnectionError as exc:
                raise _refuse(f"the JWK Set could not be fetched: {exc}", "jwks") from None
            except jwt.PyJWKClientError:
                continue
        raise _refuse(f"no configured key has kid {kid!r}", "kid")

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """Return the verified claims or raise Unauthorized with the reason."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refuse("an Authorization: Bearer <JWT> header is required", "missing_token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _refuse(f"not a JWS: {exc}") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise _refuse(
                f"algorithm {alg!r} is not accepted (only {', '.join(ALLOWED_ALGORITHMS)})", "alg"
            )
        typ = header.get("typ")
        # CDS Hooks 2.0 "Trusting CDS Clients": typ is required, fixed value JWT (RFC 7515 section
        # 4.1.9: media type names compare case-insensitively). An access token (at+jwt), a bare
        # JOSE object or a missing typ is another kind of token and must not pass as this one.
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise _refuse(f"typ must be JWT, got {typ!r}", "typ")
        key = _for_algorithm(self._key(header), alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                leeway=self.skew,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise _refuse("the token has expired (exp)", "exp") from None
        except jwt.ImmatureSignatureError:
            raise _refuse("the token is not valid yet (iat/nbf in the future)", "iat") from None
        except jwt.InvalidAudienceError:
            raise _refuse(f"aud does not name the URL called ({audience})", "aud") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse(f"the {exc.claim} claim is required", "claims") from None
        except jwt.PyJWTError as exc:
            raise _refuse(f"{type(exc).__name__}: {exc}") from None
        if claims["iat"] > time.time() + self.skew:
            raise _refuse("the token is not valid yet (iat in the future)", "iat")
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self.max_lifetime:
            raise _refuse(
                f"the token's lifetime (exp - iat = {lifetime:g} s) exceeds "
                f"{self.max_lifetime} s (ECMO_CDS_MAX_TOKEN_LIFETIME_SECONDS)",
                "lifetime",
            )
        if not isinstance(claims["iss"], str) or claims["iss"] not in self.issuers:
            raise _refuse(f"issuer {claims['iss']!r} is not allowlisted", "iss")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise _refuse("jti must be a non-empty string", "claims")
        if not self.replays.first_use(claims["iss"], jti, float(claims["exp"]) + self.skew):
            raise _refuse("the token's jti was already used (replay)", "replay")
        return claims
