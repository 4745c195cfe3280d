"""moto_server with less per-request overhead, serving on a listening socket it inherits.

The parent binds the port and hands the listening socket over, its descriptor in
CELLBRIDGE_LISTEN_FD: no other process can take a port between its choice and its use.
Arguments are moto_server's own.
"""

import logging
import os

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


def _serve_inherited(hostname, port, application, threaded=False, ssl_context=None, **_):
    server = make_server(
        hostname,
        port,
        application,
        threaded=threaded,
        ssl_context=ssl_context,
        fd=_LISTEN_FD,
    )
    server.serve_forever()


moto.server.run_simple = _serve_inherited

if __name__ == "__main__":
    main()
