"""CDS Hooks 2.0 "FHIR Resource Access": fetch what the EHR did not prefetch.

When a prefetch key is absent (not `null`: `null` means "known not to exist" and is never
fetched) and the request carries `fhirServer` and `fhirAuthorization`, the service runs the same
search as the key's prefetch template against the FHIR server, with the bearer token, and follows
`next` links up to a bound. The result is put into the prefetch as one searchset Bundle, so the
mapping code reads fetched and prefetched data the same way.

Safety rules (each one a test in tests/fhirserver/):
- the server must be on the operator's allow-list (ECMO_FHIR_SERVER_ALLOWLIST), else it is never
  contacted (SSRF); https only unless ECMO_FHIR_ALLOW_HTTP; no credentials in the URL; `next`
  links must stay under the same base URL; redirects are not followed;
- each HTTP request has a short timeout (ECMO_FHIR_TIMEOUT_SECONDS) and all of a call's requests
  share one deadline (ECMO_FHIR_DEADLINE_SECONDS), enforced while the body streams in; a body is
  capped at MAX_BODY_BYTES;
- after the server fails once (timeout, refused, 401/403, 5xx, not FHIR) the call's other keys are
  not tried against it again, so a down or slow server costs at most one timeout per call;
- the access token goes only into the Authorization header: it is never logged or put in an
  error message, and neither is a URL (they carry the patient id).

Every attempt ends in one outcome from FETCH_OUTCOMES (a bounded metric label) and takes a
measured time; the caller turns failures into a 412 naming the prefetch key and the reason.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from service.config import Settings

FETCH_OUTCOMES = (
    "ok",
    "not_allowed",
    "timeout",
    "deadline",
    "unreachable",
    "unauthorized",
    "forbidden",
    "client_error",
    "server_error",
    "not_fhir",
    "too_large",
)
"""Every outcome of one fetch attempt (metric label values; a closed set)."""

MAX_BODY_BYTES = 8 * 1024 * 1024
FHIR_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_SERVER_FAILURES = frozenset(
    {"timeout", "deadline", "unreachable", "unauthorized", "forbidden", "server_error", "not_fhir"}
)
"""Outcomes after which the call does not ask the same server again."""


class FetchFailed(Exception):
    """One prefetch key could not be fetched; `outcome` is one of FETCH_OUTCOMES."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


@dataclass(frozen=True)
class FetchPolicy:
    allowed_servers: tuple[str, ...] = ()
    """Base URLs the service may query; empty: never fetch."""
    allow_http: bool = False
    timeout_seconds: float = 2.0
    deadline_seconds: float = 5.0
    max_pages: int = 5
    max_body_bytes: int = MAX_BODY_BYTES


@dataclass(frozen=True)
class _Base:
    scheme: str
    host: str
    port: int
    path: str


def _base(url: str) -> _Base | None:
    """Scheme, host, port and path of an absolute http(s) URL without credentials; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return None
    default = 443 if parts.scheme == "https" else 80
    return _Base(parts.scheme, parts.hostname.lower(), port or default, parts.path.rstrip("/"))


def _under(url: str, base: _Base) -> bool:
    """url (which may carry a query) lies under base: same origin and a path below base.path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    default = 443 if parts.scheme == "https" else 80
    if (
        parts.scheme != base.scheme
        or (parts.hostname or "").lower() != base.host
        or (port or default) != base.port
        or parts.username is not None
    ):
        return False
    path = parts.path
    return path == base.path or path.startswith(base.path + "/")


@dataclass
class FillResult:
    prefetch: dict[str, Any]
    """The request's prefetch with the fetched keys added (failed keys stay absent)."""
    fetched: dict[str, str] = field(default_factory=dict)
    """Prefetch key -> "ok" for every key fetched."""
    failures: dict[str, FetchFailed] = field(default_factory=dict)
    """Prefetch key -> why it could not be fetched."""


def fetcher_from_settings(
    settings: Settings, observe: Callable[[str, float], None] | None = None
) -> FhirFetcher | None:
    """The app's fetcher when an allow-list is configured (else absent keys stay missing)."""
    if not settings.fhir_server_allowlist:
        return None
    policy = FetchPolicy(
        allowed_servers=settings.fhir_server_allowlist,
        allow_http=settings.fhir_allow_http,
        timeout_seconds=settings.fhir_timeout_seconds,
        deadline_seconds=settings.fhir_deadline_seconds,
        max_pages=settings.fhir_max_pages,
    )
    return FhirFetcher(policy, observe=observe)


DATE_PARAMS = {
    "Observation": "date",
    "MedicationAdministration": "effective-time",
    "Procedure": "date",
    "Condition": "recorded-date",
}
"""The date search parameter of each resource type (FHIR R4 search parameters)."""


def with_date_filter(query: str, since: datetime) -> str:
    """The query with `<date param>=ge<since>` added (absolute, UTC, to the second): a prefetch
    template cannot say "the last 7 days" in CDS Hooks 2.0, but the service's own search can.
    A resource type without a known date parameter is left as it is."""
    resource = query.lstrip("/").split("?", 1)[0]
    param = DATE_PARAMS.get(resource)
    if param is None:
        return query
    stamp = since.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return f"{query}{'&' if '?' in query else '?'}{param}=ge{quote(stamp, safe='')}"


def render(template: str, context: Mapping[str, Any]) -> str:
    """A prefetch template with its {{context.x}} tokens replaced (URL-encoded); raises
    FetchFailed("client_error") for a token the request cannot fill."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        key = name.removeprefix("context.")
        value = context.get(key) if name.startswith("context.") else None
        if not isinstance(value, str) or not value:
            raise FetchFailed("client_error", f"the prefetch template needs {name}")
        return quote(value, safe="")

    return _TOKEN.sub(one, template)


class FhirFetcher:
    """Fetches absent prefetch keys from an allow-listed FHIR server (one per app, pooled)."""

    def __init__(
        self,
        policy: FetchPolicy,
        client: httpx.Client | None = None,
        observe: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._allowed = [b for u in policy.allowed_servers if (b := _base(u)) is not None]
        self._client = client or httpx.Client(
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"Accept": "application/fhir+json"},
        )
        self._observe = observe or (lambda outcome, seconds: None)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._allowed)

    def close(self) -> None:
        self._client.close()

    def server_allowed(self, url: str) -> _Base | None:
        """The allow-list entry url falls under, when the scheme is permitted; else None."""
        base = _base(url)
        if base is None or (base.scheme == "http" and not self.policy.allow_http):
            return None
        for allowed in self._allowed:
            if _under(url, allowed):
                return base
        return None

    def fill(
        self,
        templates: Mapping[str, str],
        prefetch: Mapping[str, Any] | None,
        fhir_server: str | None,
        authorization: Mapping[str, Any] | None,
        context: Mapping[str, Any],
        since: Mapping[str, datetime] | None = None,
    ) -> FillResult:
        """Fetch every template key absent from prefetch. Never raises for a server's behaviour.

        since: prefetch key -> the oldest time its inputs use (ServiceMapping.search_since);
        those searches get a date filter."""
        result = FillResult(dict(prefetch or {}))
        wanted = [k for k in templates if k not in result.prefetch]
        if not wanted or fhir_server is None or authorization is None:
            return result
        start = self._clock()
        base = self.server_allowed(fhir_server)
        if base is None:
            why = (
                "fhirServer uses http, which this service is not configured to allow"
                if fhir_server.startswith("http:") and not self.policy.allow_http
                else "fhirServer is not on this service's FHIR server allow-list "
                "(ECMO_FHIR_SERVER_ALLOWLIST), so it was not contacted"
            )
            failure = FetchFailed("not_allowed", why)
            self._observe("not_allowed", 0.0)
            result.failures = dict.fromkeys(wanted, failure)
            return result
        token = authorization.get("access_token")
        token_type = authorization.get("token_type", "Bearer")
        if not isinstance(token, str) or not token or str(token_type).lower() != "bearer":
            failure = FetchFailed(
                "client_error", "fhirAuthorization needs an access_token of token_type Bearer"
            )
            result.failures = dict.fromkeys(wanted, failure)
            return result
        deadline = start + self.policy.deadline_seconds
        server_down: FetchFailed | None = None
        for key in wanted:
            if server_down is not None:
                result.failures[key] = FetchFailed(
                    server_down.outcome, f"not tried: an earlier request {server_down.message}"
                )
                continue
            began = self._clock()
            try:
                query = render(templates[key], context)
                if since and key in since:
                    query = with_date_filter(query, since[key])
                result.prefetch[key] = self._search(fhir_server, base, query, token, deadline)
            except FetchFailed as failure:
                self._observe(failure.outcome, self._clock() - began)
                result.failures[key] = failure
                if failure.outcome in _SERVER_FAILURES:
                    server_down = failure
                continue
            self._observe("ok", self._clock() - began)
            result.fetched[key] = "ok"
        return result

    def _search(
        self, server: str, base: _Base, query: str, token: str, deadline: float
    ) -> dict[str, Any]:
        url: str | None = f"{server.rstrip('/')}/{query.lstrip('/')}"
        entries: list[Any] = []
        pages = 0
        next_url: str | None = None
        while url is not None:
            if pages == self.policy.max_pages:
                next_url = url  # left unread: the Bundle keeps its next link (incomplete)
                break
            page = self._get(url, token, deadline)
            pages += 1
            if page.get("resourceType") != "Bundle" or page.get("type") != "searchset":
                raise FetchFailed("not_fhir", "answered something other than a searchset Bundle")
            got = page.get("entry", [])
            if not isinstance(got, list):
                raise FetchFailed("not_fhir", "answered a Bundle whose entry is not an array")
            entries.extend(e for e in got if not (isinstance(e, dict) and _is_include_outcome(e)))
            url = None
            for link in page.get("link", []) if isinstance(page.get("link"), list) else []:
                if isinstance(link, dict) and link.get("relation") == "next":
                    target = link.get("url")
                    if not isinstance(target, str) or not _under(target, base):
                        raise FetchFailed(
                            "not_fhir", "sent a next link outside the FHIR server's base URL"
                        )
                    url = target
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        if next_url is not None:
            bundle["link"] = [{"relation": "next", "url": next_url}]
        return bundle

    def _get(self, url: str, token: str, deadline: float) -> dict[str, Any]:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise FetchFailed("deadline", "ran past the overall deadline for FHIR requests")
        timeout = httpx.Timeout(min(self.policy.timeout_seconds, remaining))
        headers = {"Authorization": f"Bearer {token}"}
        body = bytearray()
        try:
            with self._client.stream("GET", url, headers=headers, timeout=timeout) as response:
                status = response.status_code
                if status in (401, 403):
                    outcome = "unauthorized" if status == 401 else "forbidden"
                    raise FetchFailed(
                        outcome, f"was refused by the FHIR server (HTTP {status}) with the token"
                    )
                if status >= 500:
                    raise FetchFailed("server_error", f"failed on the FHIR server (HTTP {status})")
                if status != 200:
                    raise FetchFailed("client_error", f"was answered HTTP {status}")
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in FHIR_JSON_TYPES:
                    raise FetchFailed("not_fhir", f"was answered {ctype or 'no content type'}")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.policy.max_body_bytes:
                        raise FetchFailed(
                            "too_large", f"answered more than {self.policy.max_body_bytes} bytes"
                        )
                    if self._clock() > deadline:
                        raise FetchFailed(
                            "deadline", "ran past the overall deadline for FHIR requests"
                        )
        except httpx.TimeoutException:
            raise FetchFailed(
                "timeout", f"got no answer within {timeout.read:g} s from the FHIR server"
            ) from None
        except httpx.TransportError as exc:
            raise FetchFailed(
                "unreachable", f"could not reach the FHIR server ({type(exc).__name__})"
            ) from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise FetchFailed("not_fhir", "answered a body that is not JSON") from None
        if not isinstance(doc, dict):
            raise FetchFailed("not_fhir", "answered JSON that is not a FHIR resource")
        return doc


def _is_include_outcome(entry: Mapping[str, Any]) -> bool:
    """A searchset may carry an OperationOutcome entry (search.mode outcome): not data."""
    search = entry.get("search")
    return isinstance(search, dict) and search.get("mode") == "outcome"
