"""moto_server with DynamoDB operations serialized.

moto serves each request on its own thread and its DynamoDB backend takes no lock, so two
conditional writes to the same item can both pass their condition (real DynamoDB never lets
that happen). Counting on conditions is how cellbridge keeps counts exact, so locally every
DynamoDB operation runs under one lock. Arguments are moto_server's own.
"""

import functools
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

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

if __name__ == "__main__":
    main()
