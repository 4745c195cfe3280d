"""moto_server with less per-request overhead, serving on a listening socket it inherits.

The parent binds the port and hands the listening socket over, its descriptor in
CELLBRIDGE_LISTEN_FD: no other process can take a port between its choice and its use.
Arguments are moto_server's own.
"""

import json
import logging
import os
import re
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
import moto.server
from moto.server import main
from werkzeug.serving import make_server

# Every request runs the host through each service's URL patterns, under a lock, to find its
# backend. A host always maps to the same backend.
_BACKENDS_BY_HOST = {}
_backend_for_host = DomainDispatcherApplication.get_backend_for_host


def _cached_backend_for_host(self, host):
    if host is None:
        return None
    if host not in _BACKENDS_BY_HOST:
        _BACKENDS_BY_HOST[host] = _backend_for_host(self, host)
    return _BACKENDS_BY_HOST[host]


DomainDispatcherApplication.get_backend_for_host = _cached_backend_for_host

# Werkzeug logs each request through a locked handler. Errors still reach the log;
# CELLBRIDGE_MOTO_REQUEST_LOG=1 brings the request lines back.
if os.environ.get("CELLBRIDGE_MOTO_REQUEST_LOG") != "1":
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

_LISTEN_FD = int(os.environ["CELLBRIDGE_LISTEN_FD"])

# ── Billing meter ────────────────────────────────────────────────────────────────────────────────
# What AWS would bill moto's callers for S3 and Secrets Manager, per caller (the `app/<name>` an
# AWS SDK configured with an app name puts in its user agent), served as JSON on
# GET /_cellbridge/meter in the shape of the MiniStack processes' meter.

METER_PATH = "/_cellbridge/meter"
# Requests are served on several threads.
_meter_lock = threading.Lock()
# (caller, service, kind) -> [requests, request bytes]
_request_usage = {}
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,]+/[^/,]+/[^/,]+/([^/,]+)/aws4_request")


def _caller(environ):
    agent = environ.get("HTTP_X_AMZ_USER_AGENT", "") + " " + environ.get("HTTP_USER_AGENT", "")
    return next(
        (token[4:] for token in agent.split() if token.startswith("app/") and len(token) > 4),
        "unnamed",
    )


def _billed_kind(environ):
    """The price class of a request: S3 bills PUT, COPY, POST and LIST at one rate, GET and the
    rest at another, DELETE not at all; Secrets Manager bills each API call alike."""
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = match.group(1) if match else "unsigned"
    method = environ.get("REQUEST_METHOD", "GET")
    if service != "s3":
        return service, "call"
    if method in ("PUT", "POST"):
        return service, "put"
    if method == "DELETE":
        return service, "delete"
    # Path-style addressing: `/bucket` or `/bucket/` is the bucket, a listing when read.
    if method == "GET" and "/" not in environ.get("PATH_INFO", "").strip("/"):
        return service, "list"
    return service, "get"


def _meter_json():
    with _meter_lock:
        rows = sorted(_request_usage.items())
    return json.dumps({
        "requests": [
            {
                "caller": caller,
                "service": service,
                "kind": kind,
                "requests": requests,
                "bytes": size,
            }
            for (caller, service, kind), (requests, size) in rows
        ],
    }).encode()


def _metered(application):
    def metered_app(environ, start_response):
        if environ.get("PATH_INFO") == METER_PATH:
            body = _meter_json()
            start_response("200 OK", [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ])
            return [body]
        key = (_caller(environ),) + _billed_kind(environ)
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        with _meter_lock:
            usage = _request_usage.setdefault(key, [0, 0])
            usage[0] += 1
            usage[1] += size
        return application(environ, start_response)

    return metered_app


def _serve_inherited(hostname, port, application, threaded=False, ssl_context=None, **_):
    server = make_server(
        hostname,
        port,
        _metered(application),
        threaded=threaded,
        ssl_context=ssl_context,
        fd=_LISTEN_FD,
    )
    server.serve_forever()


moto.server.run_simple = _serve_inherited

if __name__ == "__main__":
    main()
