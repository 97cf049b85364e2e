"""The buffering nginx in front of gunicorn (issue 18.1), run and stopped by the gunicorn master.

Why: gunicorn's sync workers read a request themselves, so a client that sends its headers or body
one byte a second holds a worker until gunicorn's timeout kills it; two such clients stall the
default two workers (and /health/live with them). gunicorn's own deployment docs ask for a
buffering proxy in front of sync workers. nginx reads every request completely (headers and body,
each read bounded by ECMO_CLIENT_TIMEOUT, the body by ECMO_MAX_BODY_BYTES) before it opens a
connection to gunicorn's Unix socket, so a worker only ever sees complete requests. Measured with
python -m bench.slowclients and python -m bench (docs/benchmark.md).

Every error nginx answers by itself (pages(): 400 malformed request or broken chunked framing, 413
body too large, 414 request line too long, 431 headers too large, 502/504 when no worker answers,
...) is in the service's one problem+json shape, with the status, code and rule gunicorn alone or
the app give for the same request, and is logged as an access line like the app's (relay_log); a
read timeout (408) is a close. /health/live and /metrics are answered by the master's own
listener (service/ops.py), so neither ever waits for a free worker.

No flask here: this module renders text and runs a process.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from service.config import Settings
from service.logs import log_fields

log = logging.getLogger("ecmo.front")
access_log = logging.getLogger("ecmo.access")
nginx_log = logging.getLogger("ecmo.nginx")

# large_client_header_buffers: the request line and each header line must fit one buffer of
# HEADER_LINE_BYTES (else 414 for the line, 431 for a header), all of them HEADER_BUFFERS buffers.
HEADER_LINE_BYTES = 8192
HEADER_BUFFERS = 4
ERROR_PREFIX = "/_ecmo_error/"
"""The internal locations of nginx's own answers (a client asking for one gets the 404 page)."""


@dataclass(frozen=True)
class Page:
    """One answer nginx gives by itself, in the service's problem+json shape (api/errors.py):
    the status the client gets, and the one field error that says what was wrong and what is
    allowed. The codes and rules are the ones gunicorn alone (service/http_errors.py) or the app
    (service/api/body.py) give for the same request, so both entry points answer alike."""

    status: int
    title: str
    code: str
    detail: str
    rule: str
    message: str
    allowed: str | None = None

    @property
    def protocol(self) -> bool:
        """On /v2/ the body carries the Open Inference Protocol's `error`, as the app's do: for
        the answers the app gives without nginx, or that stand in for a worker's. Not the HTTP
        layer's own (code http_<status>), which gunicorn alone gives before any route, in the
        plain Problem shape."""
        return not self.code.startswith("http_")

    def body(self, oip: bool) -> dict[str, Any]:
        error: dict[str, str] = {"path": "", "message": self.message, "rule": self.rule}
        if self.allowed is not None:
            error["allowed"] = self.allowed
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "errors": [error],
            "request_id": _REQUEST_ID_MARK,
        }
        if oip and self.protocol:  # /v2/...: OipProblem in openapi.yaml
            body["error"] = self.detail
        return body


_REQUEST_ID_MARK = "__REQUEST_ID__"
_FAILED = "the service failed; see its logs"


def pages(settings: Settings) -> dict[int, dict[str, Page]]:
    """Every error status nginx can answer by itself -> its answers by variant ("" = default;
    "framing": the request had a Transfer-Encoding, so a 400 means its chunked framing broke).

    Keyed by nginx's internal status, which error_page catches: 494 is "request header too large"
    (nginx would send it as 400) and is answered 431, as gunicorn does; 501 (a Transfer-Encoding
    other than chunked) and 505 (an HTTP version nginx does not speak) are answered 400, as
    gunicorn does: they are the client's errors, not the service's (no 5xx alert). 405 is
    not here: nginx's only own 405 (TRACE) is handed to the app, which names the allowed methods.
    408 is here although nginx closes the connection on a read timeout without answering.
    """
    t = settings.client_timeout
    limit = settings.max_body_bytes
    http = "http"
    malformed = Page(
        400,
        "Bad Request",
        "http_400",
        "the request line or headers are malformed",
        http,
        "the request line or a header is not HTTP/1.1",
    )
    return {
        400: {
            "": malformed,
            # as the app answers a chunk size that is not hex behind gunicorn (api/body.py)
            "framing": Page(
                400, "Bad Request", "malformed_request",
                "the request body's transfer framing is broken", "transfer_encoding",
                "cannot read the body: its chunked framing is broken (a chunk size that is "
                "not hex, a chunk without its CRLF, or Transfer-Encoding with Content-Length)",
                "Transfer-Encoding: chunked, well framed",
            ),
        },
        404: {"": Page(
            404, "Not Found", "not_found", "the requested URL was not found on the server",
            http, "no route for this path",
        )},
        408: {"": Page(
            408, "Request Timeout", "http_408", f"the request did not arrive within {t} s", http,
            "a read of the request's headers or body waited too long", f"each read within {t} s",
        )},
        411: {"": Page(
            411, "Length Required", "http_411", "the request body has no length", http,
            "neither Content-Length nor Transfer-Encoding: chunked",
            "Content-Length or Transfer-Encoding: chunked",
        )},
        413: {"": Page(
            413, "Request Entity Too Large", "request_entity_too_large",
            "The data value transmitted exceeds the capacity limit.", "max_bytes",
            "the body is larger than the service accepts", f"at most {limit} bytes",
        )},
        414: {"": Page(
            414, "URI Too Long", "http_414", "the request line is too long", http,
            "the request line is too long",
            f"a request line of at most {HEADER_LINE_BYTES} bytes",
        )},
        494: {"": Page(
            431, "Request Header Fields Too Large", "http_431", "the request headers are too large",
            http, "a header line, or the headers together, are too large",
            f"each header line at most {HEADER_LINE_BYTES} bytes, all of them at most "
            f"{HEADER_BUFFERS * HEADER_LINE_BYTES} bytes",
        )},
        500: {"": Page(500, "Internal Server Error", "internal_error", _FAILED, http, _FAILED)},
        # nginx would answer 501; gunicorn alone answers 400, and it is the client's error
        501: {"": Page(
            400, "Bad Request", "http_400", "the Transfer-Encoding is not supported", http,
            "a transfer coding the service does not decode", "Transfer-Encoding: chunked",
        )},
        502: {"": Page(
            502, "Bad Gateway", "no_worker", "no worker answered; retry", http,
            "no worker answered",
        )},
        503: {"": Page(
            503, "Service Unavailable", "no_worker", "no worker answered; retry", http,
            "no worker answered",
        )},
        504: {"": Page(
            504, "Gateway Timeout", "worker_timeout", "the worker did not answer in time", http,
            "the worker did not answer in time", f"an answer within {settings.timeout + 5} s",
        )},
        505: {"": Page(
            400, "Bad Request", "http_400", "the HTTP version is not supported", http,
            "the request line names an HTTP version the service does not speak", "HTTP/1.1",
        )},
    }  # fmt: skip


def _nginx_string(body: dict[str, Any]) -> str:
    """body as an nginx `return` text: a quoted string in which the request id is expanded."""
    text = json.dumps(body).replace(f'"{_REQUEST_ID_MARK}"', '"$ecmo_request_id"')
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_locations(settings: Settings) -> str:
    """error_page for each status of pages(), and the internal location answering it. Within one,
    the variables the maps in nginx_conf() set choose the variant; `if` holds only `return`."""
    out = []
    for internal, variants in pages(settings).items():
        # `=` alone: the answer's status is the one the location returns (so 494 -> 431).
        out.append(f"        error_page {internal} = {ERROR_PREFIX}{internal};")
        out.append(f"        location = {ERROR_PREFIX}{internal} {{")
        out.append("            internal;")
        out.append("            default_type application/problem+json;")
        out.append("            add_header X-Request-ID $ecmo_request_id always;")
        out.append("            add_header X-Content-Type-Options nosniff always;")
        out.append("            add_header Cache-Control no-store always;")
        out.append("            access_log /dev/stderr ecmo_access;")
        for variant, page in variants.items():
            if variant:  # the map in nginx_conf() sets $ecmo_variant to "<oip>:<variant>"
                for oip in ("oip", ""):
                    text = _nginx_string(page.body(bool(oip)))
                    condition = f'$ecmo_variant = "{oip}:{variant}"'
                    out.append(f"            if ({condition}) {{ return {page.status} {text}; }}")
        default = variants[""]
        text = _nginx_string(default.body(True))
        out.append(f"            if ($ecmo_oip) {{ return {default.status} {text}; }}")
        out.append(f"            return {default.status} {_nginx_string(default.body(False))};")
        out.append("        }")
    return "\n".join(out)


class FrontError(RuntimeError):
    pass


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found is None:
        raise FrontError(
            "ECMO_PROXY=nginx but no nginx binary was found: install it (Debian: apt-get install "
            "nginx-light) or set ECMO_PROXY=off (gunicorn alone; slow clients can then hold workers)"
        )
    return found


def listen_address(bind: str) -> str:
    """nginx's `listen` form of host:port."""
    host, _, port = bind.rpartition(":")
    return f"{host}:{port}"


def local_address(bind: str) -> str:
    """Where a process on this host reaches a listener bound to `bind` (0.0.0.0 -> 127.0.0.1)."""
    host, _, port = bind.rpartition(":")
    if host in ("0.0.0.0", "*", ""):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{host}:{port}"


def nginx_conf(settings: Settings, run_dir: Path, app_socket: Path, ops_address: str) -> str:
    """The whole nginx.conf: one worker, everything writable under run_dir. No access log for
    proxied requests (the app writes one JSON line per request); nginx's own answers write one
    JSON access line each to stderr, which Front relays into the service's log (route "<http>",
    as gunicorn's own answers: the 5xx log checks read both)."""
    limit = settings.max_body_bytes
    t = settings.client_timeout
    user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
    if settings.metrics_bind:
        # /metrics has a listener of its own (ECMO_METRICS_BIND): not on the public port.
        metrics = (
            "        location = /metrics { default_type application/problem+json; "
            "add_header X-Request-ID $ecmo_request_id always; "
            "add_header X-Content-Type-Options nosniff always; "
            "add_header Cache-Control no-store always; return 404 " + _not_found() + "; }"
        )
    else:
        # Scrapes are answered by the master too: no worker needed, master facts included.
        metrics = "        location = /metrics { proxy_pass http://ops; }"
    return f"""# Written by service/front.py at start; do not edit.
{user}
daemon off;
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {run_dir}/body;
    proxy_temp_path {run_dir}/proxy;
    fastcgi_temp_path {run_dir}/fastcgi;
    uwsgi_temp_path {run_dir}/uwsgi;
    scgi_temp_path {run_dir}/scgi;

    # nginx's own answers (below): the caller's request id if it is one the app would echo,
    # else nginx's; the Open Inference Protocol's `error` member on /v2/; a 400 of a request
    # with a Transfer-Encoding is its chunked framing's. One access line each: no URI, no
    # header values, never a body.
    map $http_x_request_id $ecmo_request_id {{
        "~^[A-Za-z0-9._:-]{{1,128}}$" $http_x_request_id;
        default $request_id;
    }}
    map $request_uri $ecmo_oip {{
        "~^/v2/" oip;
        default "";
    }}
    map $http_transfer_encoding $ecmo_framing {{
        "" "";
        default framing;
    }}
    map "$ecmo_oip:$ecmo_framing" $ecmo_variant {{
        default "$ecmo_oip:$ecmo_framing";
    }}
    log_format ecmo_access escape=json '{{"request_id":"$ecmo_request_id","method":"$request_method",'
        '"route":"<http>","status":$status,"request_time":"$request_time"}}';

    # Slow clients: each read of the headers or body may take at most {t} s; bodies above the
    # service's limit are refused here. A body is kept in memory up to the limit (no temp file).
    client_header_timeout {t}s;
    client_body_timeout {t}s;
    send_timeout {t}s;
    keepalive_timeout {settings.keepalive}s;
    keepalive_requests 10000;
    client_max_body_size {limit};
    client_body_buffer_size {limit};
    client_header_buffer_size 4k;
    # The request line and header limits (414, 431): gunicorn's line and field-size limits are
    # off behind nginx (service/gunicorn_conf.py); its count of header fields still applies.
    large_client_header_buffers {HEADER_BUFFERS} {HEADER_LINE_BYTES};

    upstream gunicorn {{
        server unix:{app_socket};
    }}
    upstream ops {{
        server {ops_address};
    }}
    server {{
        listen {listen_address(settings.bind)} backlog=2048;
        # nginx reads the whole request before it opens a connection to a worker.
        proxy_request_buffering on;
        proxy_buffering on;
        proxy_buffer_size 16k;
        proxy_buffers 64 16k;
        proxy_http_version 1.0;
        proxy_connect_timeout 5s;
        proxy_read_timeout {settings.timeout + 5}s;
        proxy_send_timeout {settings.timeout + 5}s;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header Connection "";
        # gunicorn trusts forwarding headers from a Unix-socket peer (nginx): drop the client's,
        # so the request's scheme and host mean what they meant without nginx.
        proxy_set_header X-Forwarded-Proto "";
        proxy_set_header X-Forwarded-Protocol "";
        proxy_set_header X-Forwarded-Ssl "";
        proxy_set_header X-Forwarded-Host "";
        proxy_set_header X-Forwarded-Port "";
        proxy_set_header Forwarded "";
        # A failed worker is not retried on another: a prediction is answered at most once.
        proxy_next_upstream off;

        # Every error nginx answers itself, in the service's problem+json shape (pages()).
{_error_locations(settings)}
        # nginx refuses TRACE itself (405, no Allow header): let the app answer it, which names the
        # methods the path does allow, in the problem shape.
        error_page 405 = @method_not_allowed;
        location @method_not_allowed {{
            proxy_method TRACE;
            proxy_pass http://gunicorn;
        }}

        # Liveness is answered by the gunicorn master (service/ops.py), never by a worker.
        location = /health/live {{ proxy_pass http://ops; }}
        location = /v2/health/live {{ proxy_pass http://ops; }}
{metrics}
        location / {{
            proxy_pass http://gunicorn;
        }}
    }}
}}
"""


def _not_found() -> str:
    page = Page(
        404, "Not Found", "not_found", "/metrics is served on its own port (ECMO_METRICS_BIND)",
        "http", "not served on this port",
    )  # fmt: skip
    return _nginx_string(page.body(oip=False))


# "2026/12/04 20:00:00 [error] 12#12: *3 upstream timed out ..., client: ..., request: "..."
_NGINX_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
           "warn": logging.WARNING, "error": logging.ERROR}  # fmt: skip


def relay_log(stream: Iterable[bytes]) -> None:
    """nginx's stderr, line by line, into the service's log (runs in a thread of the master).

    An access line (nginx's own answers, log_format ecmo_access) becomes the same "ecmo.access"
    record the app writes for each request, so the 5xx checks over the log see nginx's 502/504
    too. An error-log line becomes an "ecmo.nginx" record at its level, cut before ", client:",
    so no request line (its query string), host or referrer is logged. Reads until nginx exits;
    must never stop early, or nginx would block once the pipe is full."""
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        try:
            if line.startswith("{"):
                fields = json.loads(line)
                seconds = fields.pop("request_time", "")
                fields["latency_ms"] = round(float(seconds or 0) * 1000, 3)
                log_fields(access_log, "request", fields)
                continue
            match = _NGINX_LINE.match(line)
            if match is None:  # e.g. "nginx: [emerg] ..." before the error log is set up
                nginx_log.warning(line.split(", client:")[0])
                continue
            level, message = match.groups()
            nginx_log.log(_LEVELS.get(level, logging.CRITICAL), message.split(", client:")[0])
        except Exception:  # a line we cannot read must not end the relay
            nginx_log.warning("an nginx log line could not be read")


def _relay_until_closed(stream: IO[bytes]) -> None:
    with stream:
        relay_log(stream)


@dataclass
class Front:
    """nginx as a child of the gunicorn master."""

    run_dir: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None
    stopping: bool = False

    @classmethod
    def start(cls, settings: Settings, run_dir: Path, app_socket: Path, ops_address: str) -> Front:
        binary = nginx_binary()
        conf = run_dir / "nginx.conf"
        conf.write_text(nginx_conf(settings, run_dir, app_socket, ops_address))
        test = subprocess.run(
            [binary, "-t", "-q", "-e", "stderr", "-p", str(run_dir), "-c", str(conf)],
            capture_output=True,
            check=False,
            timeout=30,
        )
        if test.returncode != 0:
            raise FrontError(f"nginx rejected its configuration: {test.stderr.decode()[-2000:]}")
        front = cls(run_dir, conf)
        front.proc = subprocess.Popen(
            [binary, "-e", "stderr", "-p", str(run_dir), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # relayed into the service's JSON log (relay_log)
        )
        assert front.proc.stderr is not None
        threading.Thread(
            target=_relay_until_closed,
            args=(front.proc.stderr,),
            name="ecmo-nginx-log",
            daemon=True,
        ).start()
        front._wait_listening(local_address(settings.bind), timeout=10.0)
        log.info("nginx started", extra={"pid": front.proc.pid, "bind": settings.bind})
        return front

    def _wait_listening(self, address: str, timeout: float) -> None:
        host, _, port = address.rpartition(":")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                raise FrontError("nginx exited at start (see its error log above)")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise FrontError(f"nginx did not listen on {address} within {timeout:.0f} s")

    def exited(self) -> bool:
        """True once nginx is gone (the gunicorn master may have reaped it: poll() then says 0)."""
        return self.proc is None or self.proc.poll() is not None

    def signal(self, graceful: bool) -> None:
        """QUIT: stop accepting, finish what is in flight. TERM: stop now."""
        self.stopping = True
        if not self.exited():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGQUIT if graceful else signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        self.signal(graceful=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
