"""moto server, with its DynamoDB requests taken one at a time.

moto applies TransactWriteItems by deep-copying the tables it touches and restoring those
copies when a condition fails, without a lock: a failing transaction that overlaps another
request (a successful transaction, a PutItem) erases that request's writes. DynamoDB's
transactions are isolated and never do that. Serialising DynamoDB requests gives moto that
isolation; the other services stay concurrent. Other requests are served as moto_server does.

Under that lock, a transaction keeps a copy of the items it names instead of every table it
touches: moto's copy is made once per item of the transaction and costs the whole table,
so a batch of 30 writes against a table of 10,000 items copied 300,000 items (the
end-to-end burst slowed to a few webhooks a second as its tables grew). A failed
transaction puts those items back as they were, which is what moto's copies restored
(except stream records, which revguard's tables do not have). The lock above is what makes
that safe: nothing else writes between a transaction and its restore.

SQS: moto works out every queue attribute (three counts over all messages, each message
asking the clock) on each SendMessage, and on each message a ReceiveMessage returns (its
retention check). With a backlog of thousands of messages that made each call cost tens of
milliseconds. Here a message compares with the clock read once per count, and the
retention check reads the one attribute it needs; the answers are the same.
   python scripts/moto_server.py HOST PORT
"""
import copy
import sys
import threading
import time
import types

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models


def _deepcopy_except_tables(value, memo=None):
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


# moto's models module sees this `copy`: its table "backups" become the tables themselves.
dynamodb_models.copy = types.SimpleNamespace(deepcopy=_deepcopy_except_tables, copy=copy.copy)
_transact_write_items = DynamoDBBackend.transact_write_items


def _item_key(table, attrs):
    hash_value = DynamoType(attrs[table.hash_key_attr])
    range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


def _restore(table, hash_value, range_value, item):
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item
    elif item is None:
        table.items[hash_value].pop(range_value, None)
    else:
        table.items[hash_value][range_value] = item


def transact_write_items(self, transact_items):
    saved = []
    for entry in transact_items:
        try:
            _, op = next(iter(entry.items()))
            table = self.tables[op["TableName"]]
            hash_value, range_value = _item_key(table, op.get("Item") or op.get("Key"))
            item = table.get_item(hash_value, range_value)
        except Exception:
            continue  # a malformed entry: moto refuses it itself, before any write
        saved.append((table, hash_value, range_value, copy.deepcopy(item)))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        # In reverse, so that an item named twice ends as it was before the first.
        for table, hash_value, range_value, item in reversed(saved):
            _restore(table, hash_value, range_value, item)
        raise


DynamoDBBackend.transact_write_items = transact_write_items


def _count(predicate):
    def count(queue):
        now = time.time() * 1000.0
        return sum(1 for message in queue._messages if predicate(message, now))

    return property(count)


def _visible(message, now):
    return now > message.visible_at


def _delayed(message, now):
    return now < message.delayed_until


sqs_models.Queue.approximate_number_of_messages = _count(
    lambda m, now: _visible(m, now) and not _delayed(m, now)
)
sqs_models.Queue.approximate_number_of_messages_delayed = _count(_delayed)
sqs_models.Queue.approximate_number_of_messages_not_visible = _count(
    lambda m, now: not _visible(m, now)
)


def is_message_valid_based_on_retention_period(self, queue_name, message):
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > time.time()


sqs_models.SQSBackend.is_message_valid_based_on_retention_period = (
    is_message_valid_based_on_retention_period
)

host, port = sys.argv[1], int(sys.argv[2])
dispatcher = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def app(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
        with dynamodb:
            # The response body is produced inside the lock, so the request is whole.
            return list(dispatcher(environ, start_response))
    return dispatcher(environ, start_response)


run_simple(host, port, app, threaded=True, request_handler=MotoRequestHandler)
