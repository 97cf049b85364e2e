"""The buffering nginx in front of gunicorn (issue 18.1), run and stopped by the gunicorn master.

Why: gunicorn's sync workers read a request themselves, so a client that sends its headers or body
one byte a second holds a worker until gunicorn's timeout kills it; two such clients stall the
default two workers (and /health/live with them). gunicorn's own deployment docs ask for a
buffering proxy in front of sync workers. nginx reads every request completely (headers and body,
each read bounded by ECMO_CLIENT_TIMEOUT, the body by ECMO_MAX_BODY_BYTES) before it opens a
connection to gunicorn's Unix socket, so a worker only ever sees complete requests. Measured with
python -m bench.slowclients and python -m bench (docs/benchmark.md).

nginx errors (413 body too large, 400 bad header, 408 is a close, 502/504 when no worker answers)
are answered in the service's one problem+json shape. /health/live and /metrics are answered by the
master's own listener (service/ops.py), so neither ever waits for a free worker.

No flask here: this module renders text and runs a process.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings

log = logging.getLogger("ecmo.front")

# nginx-generated errors, each answered with the problem+json shape (api/errors.py).
_ERRORS = {
    400: ("Bad Request", "bad_request", "the request line or headers are malformed or too large"),
    413: ("Request Entity Too Large", "request_entity_too_large", ""),
    414: ("Request-URI Too Long", "request_uri_too_long", "the request line is too long"),
    494: ("Bad Request", "bad_request", "the request headers are too large"),
    502: ("Bad Gateway", "no_worker", "no worker answered; retry"),
    503: ("Service Unavailable", "no_worker", "no worker answered; retry"),
    504: ("Gateway Timeout", "worker_timeout", "the worker did not answer in time"),
}


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


def _problem(status: int, max_body_bytes: int) -> str:
    title, code, detail = _ERRORS[status]
    errors = []
    if status == 413:
        detail = "The data value transmitted exceeds the capacity limit."
        errors = [
            {
                "path": "",
                "message": "the body is larger than the service accepts",
                "rule": "max_bytes",
                "allowed": f"at most {max_body_bytes} bytes",
            }
        ]
    body = {
        "type": "about:blank",
        "title": title,
        "status": 400 if status == 494 else status,
        "detail": detail,
        "code": code,
        "errors": errors,
        "request_id": "__REQUEST_ID__",
    }
    # nginx `return` text: a quoted string in which $request_id is expanded.
    text = json.dumps(body).replace('"__REQUEST_ID__"', '"$request_id"')
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
    """The whole nginx.conf: one worker, everything writable under run_dir, no access log (the
    app writes one JSON line per request; nginx-answered errors go to its error log)."""
    limit = settings.max_body_bytes
    t = settings.client_timeout
    user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
    error_pages = "\n".join(
        f"        error_page {s} = /_error/{s};\n"
        f"        location = /_error/{s} {{ internal; default_type application/problem+json; "
        "add_header X-Content-Type-Options nosniff always; add_header Cache-Control no-store always; "
        f"return {400 if s == 494 else s} {_problem(s, limit)}; }}"
        for s in _ERRORS
    )
    if settings.metrics_bind:
        # /metrics has a listener of its own (ECMO_METRICS_BIND): not on the public port.
        metrics = (
            "        location = /metrics { default_type application/problem+json; "
            "add_header X-Content-Type-Options nosniff always; return 404 " + _not_found() + "; }"
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
    # The only header limits: gunicorn's are off behind nginx (service/gunicorn_conf.py), so
    # every header rejection is nginx's, in the problem shape (414 line, 400 field or total).
    large_client_header_buffers 4 8k;

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

{error_pages}
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
    body = {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "/metrics is served on its own port (ECMO_METRICS_BIND)",
        "code": "not_found",
        "errors": [],
        "request_id": "__REQUEST_ID__",
    }
    return "'" + json.dumps(body).replace('"__REQUEST_ID__"', '"$request_id"') + "'"


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
        )
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
