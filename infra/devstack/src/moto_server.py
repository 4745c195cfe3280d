"""moto_server with DynamoDB operations serialized, SQS receives kept linear, and less
per-request overhead; it can serve on a listening socket it inherits.

moto serves each request on its own thread and its DynamoDB backend takes no lock, so two
conditional writes to the same item can both pass their condition (real DynamoDB never lets
that happen). Counting on conditions is how cellbridge keeps counts exact, so locally every
DynamoDB operation runs under one lock. Arguments are moto_server's own.
"""

import functools
import logging
import os
import threading

from moto.core.utils import unix_time
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.models import Queue, SQSBackend
import moto.server
from moto.server import main
from werkzeug.serving import make_server

_LOCK = threading.RLock()
_OPERATIONS = (
    "put_item",
    "get_item",
    "query",
    "scan",
    "update_item",
    "delete_item",
    "transact_write_items",
    "transact_get_items",
    "batch_write_item",
)


def _serialized(operation):
    @functools.wraps(operation)
    def run(*args, **kwargs):
        with _LOCK:
            return operation(*args, **kwargs)

    return run


for _name in _OPERATIONS:
    setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))


def _retained(self, queue_name, message):
    """Whether `message` is within its queue's retention period.

    moto reads the period through the queue's full attribute set, which counts every message
    in the queue, and it does so for each message it receives: a receive costs the square of
    the backlog, so a telemetry queue under load stalls moto. The period alone is a plain
    attribute.
    """
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return retain_until > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _retained

# SendMessage builds the queue's whole attribute set to read one flag, counting every message
# three times on each send. While a send runs, the counts (which it never reads) are skipped;
# GetQueueAttributes still counts exactly.
_SENDING = threading.local()


def _uncounted_while_sending(name):
    count = getattr(Queue, name).fget

    def get(self):
        if getattr(_SENDING, "active", False):
            return 0
        return count(self)

    return property(get)


for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_not_visible",
    "approximate_number_of_messages_delayed",
):
    setattr(Queue, _name, _uncounted_while_sending(_name))


def _sending(operation):
    @functools.wraps(operation)
    def run(*args, **kwargs):
        _SENDING.active = True
        try:
            return operation(*args, **kwargs)
        finally:
            _SENDING.active = False

    return run


SQSBackend.send_message = _sending(SQSBackend.send_message)

# Every request runs the host through each service's URL patterns, under a lock, to find its
# backend: with a fleet running, a tenth of moto's time. A host always maps to the same backend.
_BACKENDS_BY_HOST = {}
_backend_for_host = DomainDispatcherApplication.get_backend_for_host


def _cached_backend_for_host(self, host):
    if host is None:
        return None
    if host not in _BACKENDS_BY_HOST:
        _BACKENDS_BY_HOST[host] = _backend_for_host(self, host)
    return _BACKENDS_BY_HOST[host]


DomainDispatcherApplication.get_backend_for_host = _cached_backend_for_host

# Werkzeug logs each request through a locked handler: a fifth of moto's time under load.
# Errors still reach the log; CELLBRIDGE_MOTO_REQUEST_LOG=1 brings the request lines back.
if os.environ.get("CELLBRIDGE_MOTO_REQUEST_LOG") != "1":
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

# The parent may bind the port itself and hand the listening socket over, its descriptor in
# CELLBRIDGE_MOTO_LISTEN_FD: no other process can take a port between its choice and its use.
_LISTEN_FD = os.environ.get("CELLBRIDGE_MOTO_LISTEN_FD")
if _LISTEN_FD is not None:

    def _serve_inherited(hostname, port, application, threaded=False, ssl_context=None, **_):
        server = make_server(
            hostname,
            port,
            application,
            threaded=threaded,
            ssl_context=ssl_context,
            fd=int(_LISTEN_FD),
        )
        server.serve_forever()

    moto.server.run_simple = _serve_inherited

if __name__ == "__main__":
    main()
