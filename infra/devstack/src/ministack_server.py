"""MiniStack's DynamoDB and DynamoDB Streams, or its SQS, serving on a listening socket it inherits.

The parent binds the port and hands the listening socket over, its descriptor in
CELLBRIDGE_LISTEN_FD: no other process can take a port between its choice and its use.
MiniStack reads its own settings (SERVICES, MINISTACK_ACCOUNT_ID, ...) from the
environment the parent gives it. Its SQS hot paths are replaced (below).

Each process also keeps a billing meter: per caller (the `app/<name>` an AWS SDK configured with
an app name puts in its user agent, else "unnamed"), what AWS would bill for the DynamoDB and SQS
requests it served, by AWS's rules rather than by what MiniStack reports. The cumulative counters
are served as JSON on GET /_cellbridge/meter, so a benchmark can take the difference of two
readings and tell what a run would cost on AWS.
"""

import asyncio
import base64
import contextvars
import json
import os
import time

from hypercorn.asyncio import serve
from hypercorn.config import Config

from ministack.app import app
from ministack.services import sqs


def _remove_received(queue, handles):
    """Removes the messages whose receipt handles are in `handles`; returns the handles found.

    MiniStack's deletes walk the whole queue, once per entry of a batch; with tens of thousands
    of messages waiting (a telemetry queue that fell behind) a fleet's deletes took most of its
    time. A receive hands out the oldest visible messages, so the ones being deleted sit near the
    head of the queue and this walk stops as soon as every handle is found. A message that was
    never received has no handle, so no handle removes it.
    """
    messages = queue["messages"]
    found = set()
    positions = []
    for position, message in enumerate(messages):
        if len(found) == len(handles):
            break
        handle = message["receipt_handle"]
        if handle is not None and handle in handles:
            found.add(handle)
            positions.append(position)
    for position in reversed(positions):
        del messages[position]
    return found


def _delete_message(data, qurl):
    queue = sqs._get_q(data.get("QueueUrl", qurl), "sqs:DeleteMessage")
    handle = data.get("ReceiptHandle", "")
    if not handle:
        raise sqs._Err("MissingParameter", "The request must contain the parameter ReceiptHandle.")
    if not _remove_received(queue, {handle}):
        raise sqs._Err("ReceiptHandleIsInvalid", "The input receipt handle is invalid.")
    return {}


def _delete_message_batch(data, qurl):
    """Same answers as MiniStack's: an entry succeeds when its receipt handle matched a message
    (the first entry naming a handle, as deleting one message twice finds nothing the second
    time)."""
    queue = sqs._get_q(data.get("QueueUrl", qurl), "sqs:DeleteMessage")
    entries = data.get("Entries", [])
    sqs._validate_batch_entries(entries, "DeleteMessageBatchRequestEntry")
    first_entry_by_handle = {}
    for entry in entries:
        first_entry_by_handle.setdefault(entry.get("ReceiptHandle", ""), entry.get("Id", ""))
    matched = _remove_received(queue, first_entry_by_handle)
    successful, failed = [], []
    for entry in entries:
        entry_id, handle = entry.get("Id", ""), entry.get("ReceiptHandle", "")
        if handle in matched and first_entry_by_handle[handle] == entry_id:
            successful.append({"Id": entry_id})
        else:
            failed.append({
                "Id": entry_id,
                "Code": "ReceiptHandleIsInvalid",
                "Message": "The input receipt handle is invalid.",
                "SenderFault": True,
            })
    return {"Successful": successful, "Failed": failed}


sqs._HANDLERS["DeleteMessage"] = _delete_message
sqs._HANDLERS["DeleteMessageBatch"] = _delete_message_batch

# Every ReceiveMessage also walked the whole queue three times (retention, dead letters, then the
# visible messages), so a queue a few thousand deep cost milliseconds a receive and a telemetry
# queue that fell behind never caught up. Below: the standard-queue receive stops at the first
# visible messages it can hand out, and the two sweeps run at most every SWEEP_SECONDS per queue.
SWEEP_SECONDS = 1.0
_collect_all = sqs._collect_msgs
_expire_all = sqs._expire_retained
_dead_letter_all = sqs._dlq_sweep


def _max_receive_count(queue):
    try:
        return int(json.loads(queue["attributes"].get("RedrivePolicy") or "{}").get("maxReceiveCount", 0))
    except (TypeError, ValueError, AttributeError):
        return 0


def _collect_msgs(queue, max_n, vis_timeout):
    if queue["is_fifo"]:
        return _collect_all(queue, max_n, vis_timeout)
    now = time.time()
    # A message at its maxReceiveCount waits for the dead-letter sweep; it is never handed out
    # again, as SQS would have moved it.
    max_receives = _max_receive_count(queue)
    result = []
    for message in queue["messages"]:
        if len(result) >= max_n:
            break
        # The in-flight messages at the head are passed over on every receive: one look each.
        visible_at = message.get("visible_at")
        if visible_at is not None and visible_at > now:
            continue
        sqs._ensure_msg_fields(message)
        if message["visible_at"] > now:
            continue
        if max_receives and message["receive_count"] >= max_receives:
            continue
        message["receipt_handle"] = sqs.new_uuid()
        message["visible_at"] = now + vis_timeout
        message["receive_count"] += 1
        if message.get("first_receive_at") is None:
            message["first_receive_at"] = now
        result.append(message)
    return result


def _at_most_every(sweep, key):
    def run(queue):
        now = time.time()
        if now - queue.get(key, 0.0) >= SWEEP_SECONDS:
            queue[key] = now
            sweep(queue)

    return run


sqs._collect_msgs = _collect_msgs
sqs._expire_retained = _at_most_every(_expire_all, "_cellbridge_expired_at")
sqs._dlq_sweep = _at_most_every(_dead_letter_all, "_cellbridge_swept_at")

# ── Billing meter ────────────────────────────────────────────────────────────────────────────────
# What AWS would bill, counted in dicts as requests are served (one at a time per process, on the
# event loop) and encoded only when read: the meter must not slow the emulator it measures.

METER_PATH = "/_cellbridge/meter"
_SERVICES = set(os.environ.get("SERVICES", "").split(","))
# (caller, table, operation) -> [requests, write units, read units, conditional check failures]
_dynamodb_usage = {}
# (caller, queue, action) -> [requests, billed requests, messages]
_sqs_usage = {}
_callers = {}


def _caller(headers):
    """The name an AWS SDK configured with an app name puts in its user agent as `app/<name>`
    (the Rust SDK in both user-agent and x-amz-user-agent), else "unnamed".

    The per-call metrics in a user agent make a few distinct strings per client: the answer is
    cached by string, and the cache emptied now and then so it cannot grow without end.
    """
    agent = headers.get("x-amz-user-agent", "") + " " + headers.get("user-agent", "")
    caller = _callers.get(agent)
    if caller is None:
        caller = next(
            (token[4:] for token in agent.split() if token.startswith("app/") and len(token) > 4),
            "unnamed",
        )
        if len(_callers) >= 1024:
            _callers.clear()
        _callers[agent] = caller
    return caller


def _json_object(body):
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _meter_json():
    return json.dumps({
        "dynamodb": [
            {
                "caller": caller,
                "table": table,
                "operation": operation,
                "requests": requests,
                "write_units": write_units,
                "read_units": read_units,
                "conditional_check_failures": failures,
            }
            for (caller, table, operation), (requests, write_units, read_units, failures)
            in sorted(_dynamodb_usage.items())
        ],
        "sqs": [
            {
                "caller": caller,
                "queue": queue,
                "action": action,
                "requests": requests,
                "billed_requests": billed,
                "messages": messages,
            }
            for (caller, queue, action), (requests, billed, messages) in sorted(_sqs_usage.items())
        ],
    }).encode()


async def _metered_app(scope, receive, send):
    """MiniStack's app, plus the meter's reading at METER_PATH on the emulator's own port (a
    benchmark finds it where it finds the emulator)."""
    if scope["type"] == "http" and scope["path"] == METER_PATH:
        if scope["method"] == "GET":
            status, body = 200, _meter_json()
        else:
            status, body = 405, b'{"message": "GET only"}'
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        })
        await send({"type": "http.response.body", "body": body})
        return
    await app(scope, receive, send)


# ── DynamoDB: on-demand capacity units ──
# MiniStack reports a flat 0.5 or 1 read unit per Query or Scan whatever it read, and no capacity
# unless asked for; so the meter takes the items each operation reads and writes from the patched
# MiniStack functions below and applies AWS's on-demand rules itself.

if "dynamodb" in _SERVICES:
    # Only in the DynamoDB process: importing MiniStack's DynamoDB starts its TTL sweeper thread.
    from ministack.services import dynamodb, dynamodb_streams


class _Usage:
    """What one DynamoDB request consumed, held until its answer says whether AWS bills it."""

    __slots__ = ("tables", "units", "read_bytes", "billed_failure")

    def __init__(self):
        self.tables = ()  # the tables the request names, so a refused request is still counted
        self.units = {}  # table -> [write units, read units, conditional check failures]
        self.read_bytes = 0  # of a Query or Scan page, as read, before any filter or projection
        self.billed_failure = False  # refused by a condition, which AWS bills all the same

    def add(self, table, write=0.0, read=0.0, failures=0):
        units = self.units.get(table)
        if units is None:
            units = self.units[table] = [0.0, 0.0, 0]
        units[0] += write
        units[1] += read
        units[2] += failures


# The request being served, for the patched MiniStack functions; None outside a request (MiniStack's
# TTL sweeper deletes in a thread of its own, and AWS does not bill TTL deletes either).
_usage = contextvars.ContextVar("cellbridge_dynamodb_usage", default=None)


def _record_dynamodb(caller, operation, usage, status, body, table_of_body):
    if status != 200 and not usage.billed_failure:
        # Refused before anything was read or written (validation, a missing table): no units.
        usage.units.clear()
    units = usage.units
    for table in usage.tables:
        if table not in units:
            units[table] = (0.0, 0.0, 0)
    if not units:
        # Control-plane and Streams operations: named by their body, which is small.
        units[table_of_body(body)] = (0.0, 0.0, 0)
    # A batch or transaction over several tables counts as a request on each of them.
    for table, (write, read, failures) in units.items():
        key = (caller, table, operation)
        row = _dynamodb_usage.get(key)
        if row is None:
            row = _dynamodb_usage[key] = [0, 0.0, 0.0, 0]
        row[0] += 1
        row[1] += write
        row[2] += read
        row[3] += failures


def _metered_handler(handle_request, table_of_body):
    """A DynamoDB or DynamoDB Streams handle_request recording each request under its caller, table
    and operation."""

    async def handle(method, path, headers, body, query_params):
        usage = _Usage()
        token = _usage.set(usage)
        status = 500
        try:
            response = await handle_request(method, path, headers, body, query_params)
            status = response[0]
            return response
        finally:
            _usage.reset(token)
            operation = headers.get("x-amz-target", "").rpartition(".")[2]
            _record_dynamodb(_caller(headers), operation, usage, status, body, table_of_body)

    return handle


def _table_name(value):
    """The table a request names, by name or ARN; None when it names none."""
    return dynamodb._normalize_table_name(value) if isinstance(value, str) else None


def _table_of_request(body):
    data = _json_object(body)
    for field in ("TableName", "TableArn", "ResourceArn"):
        name = _table_name(data.get(field))
        if name:
            return name
    return ""


def _table_of_stream_request(body):
    data = _json_object(body)
    arn = data.get("StreamArn")
    if isinstance(arn, str):
        return dynamodb_streams._table_from_stream_arn(arn) or ""
    iterator = data.get("ShardIterator")
    if isinstance(iterator, str):
        decoded = dynamodb_streams._decode_iterator(iterator)
        return str(decoded["t"]) if decoded else ""
    return _table_name(data.get("TableName")) or ""


def _one_table(data):
    name = _table_name(data.get("TableName"))
    return (name,) if name is not None else ()


def _batch_tables(data):
    items = data.get("RequestItems")
    if not isinstance(items, dict):
        return ()
    return tuple(name for name in map(_table_name, items) if name is not None)


def _transaction_tables(data):
    names = {}
    members = data.get("TransactItems")
    for member in members if isinstance(members, list) else ():
        for operation in member.values() if isinstance(member, dict) else ():
            name = _table_name(operation.get("TableName")) if isinstance(operation, dict) else None
            if name is not None:
                names[name] = None
    return tuple(names)


def _size(item):
    return dynamodb._item_size_bytes(item) if item else 0


def _read_units(size, consistent):
    """One read: a unit per 4 KB begun, at least one; half as much when eventually consistent."""
    return max(1, -(-size // 4096)) * (1.0 if consistent else 0.5)


def _write_units(table, old_item, new_item, table_factor=1.0):
    """One item written: a unit per KB begun of the larger of its old and new versions, at least
    one, plus each secondary index's own write (MiniStack's _index_write_units: none when the
    index's entry is unchanged, its entry's size when added, removed or rewritten, both when it
    moves)."""
    size = max(
        dynamodb._billed_item_bytes(table, old_item) if old_item else 0,
        dynamodb._billed_item_bytes(table, new_item) if new_item else 0,
    )
    units = table_factor * dynamodb._capacity_kb(size)
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for index in table.get(kind) or ():
            units += dynamodb._index_write_units(table, index, old_item, new_item)
    return units


def _data_plane(tables, bill=None):
    """Wraps a data-plane operation: notes the tables it names and, when it succeeds, `bill`s it."""

    def metered(operation):
        def run(data):
            usage = _usage.get()
            if usage is None:
                return operation(data)
            usage.tables = tables(data)
            response = operation(data)
            if bill is not None and response[0] == 200:
                bill(usage, data)
            return response

        return run

    return metered


def _bill_get_item(usage, data):
    # The whole item, whatever the projection; a missing item costs a read all the same.
    name = usage.tables[0]
    table = dynamodb._tables.get(name)
    item = dynamodb._get_item_by_key(table, data.get("Key") or {}) if table else None
    usage.add(name, read=_read_units(_size(item), data.get("ConsistentRead")))


def _bill_batch_get_item(usage, data):
    # As GetItem, item by item.
    for requested, config in data["RequestItems"].items():
        name = _table_name(requested)
        table = dynamodb._tables.get(name)
        for key in config.get("Keys") or ():
            item = dynamodb._get_item_by_key(table, key) if table else None
            usage.add(name, read=_read_units(_size(item), config.get("ConsistentRead")))


def _bill_transact_get_items(usage, data):
    # A transactional read costs twice a strongly consistent one.
    for member in data["TransactItems"]:
        get = member.get("Get") or {}
        name = _table_name(get.get("TableName"))
        table = dynamodb._tables.get(name)
        item = dynamodb._get_item_by_key(table, get.get("Key") or {}) if table else None
        usage.add(name, read=2 * _read_units(_size(item), True))


def _bill_page(usage, data):
    # Query and Scan: the page's items as read (_paginate_evaluated_items), rounded up once a page.
    usage.add(usage.tables[0], read=_read_units(usage.read_bytes, data.get("ConsistentRead")))


def _paginate_evaluated_items(items, limit, table, index_name=None):
    """MiniStack's own page builder (up to Limit items and at most 1 MB read; an index read counts
    the index's entry), which also adds the page's size to the request's reads. Query and Scan
    build their page here before applying any filter or projection: the reads AWS bills."""
    page = []
    page_bytes = 0
    stopped = False
    for item in items:
        entry = dynamodb._apply_index_projection(item, table, index_name) if index_name else item
        item_bytes = dynamodb._item_size_bytes(entry)
        if page and page_bytes + item_bytes > dynamodb._DDB_PAGE_SIZE_BYTES:
            stopped = True
            break
        page.append(item)
        page_bytes += item_bytes
        if (limit is not None and len(page) >= int(limit)) or (
            page_bytes >= dynamodb._DDB_PAGE_SIZE_BYTES
        ):
            stopped = True
            break
    usage = _usage.get()
    if usage is not None:
        usage.read_bytes += page_bytes
    return page, stopped


def _metered_add_consumed_capacity(add_consumed_capacity):
    """PutItem, UpdateItem and DeleteItem report each write they make here, with the item before and
    after, whether or not the caller asked for its consumed capacity."""

    def run(result, data, table_name, write=False, old_item=None, new_item=None, index_name=None):
        usage = _usage.get()
        if write and usage is not None:
            table = dynamodb._tables.get(table_name)
            if table is not None:
                usage.add(table_name, write=_write_units(table, old_item, new_item))
        return add_consumed_capacity(
            result, data, table_name,
            write=write, old_item=old_item, new_item=new_item, index_name=index_name,
        )

    return run


def _metered_accumulate_write_capacity(accumulate_write_capacity):
    """BatchWriteItem reports each put and delete here, as it makes it."""

    def run(cap, table, old_item, new_item):
        usage = _usage.get()
        if usage is not None:
            usage.add(table["TableName"], write=_write_units(table, old_item, new_item))
        return accumulate_write_capacity(cap, table, old_item, new_item)

    return run


def _metered_conditional_check_failed(conditional_check_failed):
    """A single-item write refused by its condition: AWS bills it on the existing item's size (at
    least one unit)."""

    def run(data, old_item, *args, **kwargs):
        usage = _usage.get()
        if usage is not None:
            name = _table_name(data.get("TableName")) or (usage.tables[0] if usage.tables else "")
            table = dynamodb._tables.get(name) or {}
            size = dynamodb._billed_item_bytes(table, old_item) if old_item else 0
            usage.add(name, write=dynamodb._capacity_kb(size), failures=1)
            usage.billed_failure = True
        return conditional_check_failed(data, old_item, *args, **kwargs)

    return run


def _metered_transact_cancel_response(transact_cancel_response):
    """A transaction cancelled because a condition failed is billed; one cancelled as invalid is
    not."""

    def run(total, failures, val_reasons):
        usage = _usage.get()
        if usage is not None and failures:
            usage.billed_failure = True
        return transact_cancel_response(total, failures, val_reasons)

    return run


def _transaction_members(data):
    """Each member of a TransactWriteItems on a table that exists: (table name, table, kind,
    operation, key, the item now)."""
    members = []
    for member in data.get("TransactItems") or ():
        if not isinstance(member, dict):
            continue
        kind, operation = dynamodb._extract_transact_op(member)
        name = _table_name(operation.get("TableName")) if isinstance(operation, dict) else None
        table = dynamodb._tables.get(name) if name is not None else None
        if table is None:
            continue
        if kind == "Put":
            item = operation.get("Item")
            key = dynamodb._extract_key_from_item(table, item) if isinstance(item, dict) else None
        else:
            key = operation.get("Key")
        if isinstance(key, dict):
            item_now = dynamodb._get_item_by_key(table, key)
            members.append((name, table, kind, operation, key, item_now))
    return members


def _metered_transact_write_items(transact_write_items):
    """TransactWriteItems: two units per KB begun of each member's item (a ConditionCheck's too),
    its indexes' writes at the usual rate; cancelled by a condition, each member as if written; a
    replay of a ClientRequestToken already used, a transactional read of the items (as MiniStack
    measured on AWS)."""

    def run(data):
        usage = _usage.get()
        if usage is None:
            return transact_write_items(data)
        usage.tables = _transaction_tables(data)
        members = _transaction_members(data)
        token = data.get("ClientRequestToken")
        prior = dynamodb._txn_idempotency.get(token) if isinstance(token, str) and token else None
        replay = (
            prior is not None
            and time.time() - prior.get("completed_at", 0) < dynamodb._TXN_TOKEN_TTL
        )
        response = transact_write_items(data)
        if response[0] == 200 and replay:
            for name, sizes in (prior.get("sizes") or {}).items():
                for size in sizes:
                    usage.add(name, read=2 * _read_units(size, True))
        elif response[0] == 200:
            for name, table, kind, operation, key, old_item in members:
                if kind == "ConditionCheck":
                    usage.add(name, write=2 * dynamodb._capacity_kb(_size(old_item or key)))
                else:
                    new_item = None if kind == "Delete" else dynamodb._get_item_by_key(table, key)
                    usage.add(name, write=_write_units(table, old_item, new_item, table_factor=2.0))
        elif usage.billed_failure:
            for name, table, kind, operation, key, old_item in members:
                new_item = operation.get("Item") if kind == "Put" else None
                size = max(_size(old_item), _size(new_item))
                usage.add(name, write=2 * dynamodb._capacity_kb(size))
            usage.add(usage.tables[0] if usage.tables else "", failures=1)
        return response

    return run


if "dynamodb" in _SERVICES:
    # handle_request looks its operations up by their module names on every request, and they
    # call these helpers through the module too, so replacing the names is enough.
    dynamodb.handle_request = _metered_handler(dynamodb.handle_request, _table_of_request)
    dynamodb_streams.handle_request = _metered_handler(
        dynamodb_streams.handle_request, _table_of_stream_request
    )
    for _name, _metered in (
        ("_put_item", _data_plane(_one_table)),
        ("_update_item", _data_plane(_one_table)),
        ("_delete_item", _data_plane(_one_table)),
        ("_get_item", _data_plane(_one_table, _bill_get_item)),
        ("_query", _data_plane(_one_table, _bill_page)),
        ("_scan", _data_plane(_one_table, _bill_page)),
        ("_batch_write_item", _data_plane(_batch_tables)),
        ("_batch_get_item", _data_plane(_batch_tables, _bill_batch_get_item)),
        ("_transact_get_items", _data_plane(_transaction_tables, _bill_transact_get_items)),
        ("_transact_write_items", _metered_transact_write_items),
        ("_add_consumed_capacity", _metered_add_consumed_capacity),
        ("_accumulate_write_capacity", _metered_accumulate_write_capacity),
        ("_conditional_check_failed", _metered_conditional_check_failed),
        ("_transact_cancel_response", _metered_transact_cancel_response),
    ):
        setattr(dynamodb, _name, _metered(getattr(dynamodb, _name)))
    dynamodb._paginate_evaluated_items = _paginate_evaluated_items


# ── SQS: billed requests ──
# AWS bills an SQS request per 64 KB of payload it carries (a send's messages, a receive's answer).

_sqs_caller = contextvars.ContextVar("cellbridge_sqs_caller", default=None)
_handle_sqs = sqs.handle_request
_dispatch_sqs = sqs._dispatch


def _text_bytes(text):
    if not isinstance(text, str):
        return 0
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _message_bytes(message, body_field):
    """A message's payload: its body and its attributes' names, data types and values."""
    size = _text_bytes(message.get(body_field))
    attributes = message.get("MessageAttributes")
    for name, attribute in attributes.items() if isinstance(attributes, dict) else ():
        size += _text_bytes(name)
        if isinstance(attribute, dict):
            size += _text_bytes(attribute.get("DataType"))
            size += _text_bytes(attribute.get("StringValue"))
            binary = attribute.get("BinaryValue")
            if isinstance(binary, str):
                try:
                    size += len(base64.b64decode(binary))
                except ValueError:
                    size += len(binary)
            elif isinstance(binary, bytes):
                size += len(binary)
    return size


def _chunks(size):
    return max(1, -(-size // 65536))


def _sqs_charge(action, data, result):
    """(billed requests, messages) of an action that succeeded."""
    if action == "SendMessage":
        return _chunks(_message_bytes(data, "MessageBody")), 1
    if action == "SendMessageBatch":
        entries = data.get("Entries") or ()
        size = sum(
            _message_bytes(entry, "MessageBody") for entry in entries if isinstance(entry, dict)
        )
        return _chunks(size), len(result.get("Successful") or ())
    if action == "ReceiveMessage":
        messages = result.get("Messages") or ()
        return _chunks(sum(_message_bytes(message, "Body") for message in messages)), len(messages)
    if action == "DeleteMessage":
        return 1, 1
    if action == "DeleteMessageBatch":
        return 1, len(result.get("Successful") or ())
    return 1, 0


def _queue_of(data, qurl):
    """The queue an action names: by name (CreateQueue, GetQueueUrl) or by URL; "" for none."""
    name = data.get("QueueName")
    if isinstance(name, str):
        return name
    url = data.get("QueueUrl") or qurl
    return url.rstrip("/").rpartition("/")[2] if isinstance(url, str) else ""


async def _metered_sqs_request(method, path, headers, body, query_params):
    # The caller, for _metered_dispatch: a receive can wait, so requests interleave.
    token = _sqs_caller.set(_caller(headers))
    try:
        return await _handle_sqs(method, path, headers, body, query_params)
    finally:
        _sqs_caller.reset(token)


async def _metered_dispatch(action, data, qurl):
    """Every action of either protocol (JSON, query) passes here with its parsed request and its
    answer before encoding; an action refused is one billed request carrying no message."""
    caller = _sqs_caller.get()
    if caller is None:
        return await _dispatch_sqs(action, data, qurl)
    billed, messages = 1, 0
    try:
        result = await _dispatch_sqs(action, data, qurl)
        billed, messages = _sqs_charge(action, data, result)
        return result
    finally:
        key = (caller, _queue_of(data, qurl), action)
        row = _sqs_usage.get(key)
        if row is None:
            row = _sqs_usage[key] = [0, 0, 0]
        row[0] += 1
        row[1] += billed
        row[2] += messages


sqs.handle_request = _metered_sqs_request
sqs._dispatch = _metered_dispatch

config = Config()
config.bind = [f"fd://{int(os.environ['CELLBRIDGE_LISTEN_FD'])}"]
# Clients keep connections open between calls; hypercorn's 5 s default would close them in
# the pauses of a quiet stack and make the next call reconnect.
config.keep_alive_timeout = 75
config.loglevel = "WARNING"
# One line per request costs more than a small request does.
config.accesslog = None

asyncio.run(serve(_metered_app, config))
