"""moto server, with its DynamoDB requests taken one at a time.

moto applies TransactWriteItems by deep-copying the tables it touches and restoring those
copies when a condition fails, without a lock: a failing transaction that overlaps another
request (a successful transaction, a PutItem) erases that request's writes. DynamoDB's
transactions are isolated and never do that. Serialising DynamoDB requests gives moto that
isolation; the other services stay concurrent. Other requests are served as moto_server does.
   python scripts/moto_server.py HOST PORT
"""
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
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
