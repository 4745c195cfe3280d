"""MiniStack's DynamoDB and DynamoDB Streams, or its SQS, serving on a listening socket it inherits.

The parent binds the port and hands the listening socket over, its descriptor in
CELLBRIDGE_LISTEN_FD: no other process can take a port between its choice and its use.
MiniStack reads its own settings (SERVICES, MINISTACK_ACCOUNT_ID, ...) from the
environment the parent gives it. Its SQS hot paths are replaced (below).
"""

import asyncio
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

config = Config()
config.bind = [f"fd://{int(os.environ['CELLBRIDGE_LISTEN_FD'])}"]
# Clients keep connections open between calls; hypercorn's 5 s default would close them in
# the pauses of a quiet stack and make the next call reconnect.
config.keep_alive_timeout = 75
config.loglevel = "WARNING"
# One line per request costs more than a small request does.
config.accesslog = None

asyncio.run(serve(app, config))
