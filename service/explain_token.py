"""Opaque, short-lived tokens for the "why this risk" page.

The service is stateless and runs several workers (and pods), so the page's data travel in its
URL: the explanation payload (JSON, zlib-compressed) encrypted and authenticated with Fernet
(AES-128-CBC + HMAC-SHA256, with the creation time inside the token). Nothing in the URL is
readable or changeable without a key; a token older than the TTL is refused.

Keys come from ECMO_EXPLAIN_KEYS (comma-separated Fernet keys, a secret). Rotation (MultiFernet):
put the new key first (it encrypts new tokens), keep the old one after it until the TTL has
passed (old links still open), then remove it. Every pod must get the same list.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.errors import ExplanationExpired, ExplanationNotFound

TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 8000
"""Longer paths are refused before any crypto work (a card's token is ~1-2 KB)."""


class ExplainTokens:
    def __init__(
        self, keys: Sequence[str], ttl_seconds: int, clock: Callable[[], float] | None = None
    ) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k.encode("ascii")) for k in keys])
        self.ttl = ttl_seconds
        self._clock = clock

    def _now(self) -> int | None:
        return int(self._clock()) if self._clock is not None else None

    def seal(self, payload: dict[str, Any]) -> str:
        data = zlib.compress(
            json.dumps({"v": TOKEN_VERSION, **payload}, separators=(",", ":")).encode(), 9
        )
        now = self._now()
        token = (
            self._fernet.encrypt_at_time(data, now)
            if now is not None
            else self._fernet.encrypt(data)
        )
        return token.decode("ascii")

    def open(self, token: str) -> dict[str, Any]:
        """The payload; ExplanationNotFound if no key opens it, ExplanationExpired if too old."""
        if len(token) > MAX_TOKEN_CHARS:
            raise ExplanationNotFound("no explanation for this link")
        raw = token.encode("ascii", errors="replace")
        now = self._now()
        try:
            data = (
                self._fernet.decrypt_at_time(raw, self.ttl, now)
                if now is not None
                else self._fernet.decrypt(raw, ttl=self.ttl)
            )
        except InvalidToken:
            try:
                self._fernet.extract_timestamp(raw)  # authentic, so only its age failed
            except InvalidToken:
                raise ExplanationNotFound("no explanation for this link") from None
            raise ExplanationExpired(
                f"this link has expired (links work for {self.ttl // 60} minutes); open the "
                "card again from the EHR"
            ) from None
        try:
            payload: dict[str, Any] = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError):
            raise ExplanationNotFound("no explanation for this link") from None
        if payload.get("v") != TOKEN_VERSION:
            raise ExplanationNotFound("no explanation for this link")
        return payload
