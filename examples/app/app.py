"""A small Flask application on a pgsteady database: the client kit as a drop-in.

* ``get_pool()`` -- one pool per process from ``DATABASE_URL`` + ``DATABASE_PASSWORD_FILE``
  (TLS verified, 2-20 connections, connect retries 1/2/4 s, fork-safe).
* ``health_blueprint()`` -- ``/api/health``, ``/api/health/ready``, ``/api/health/live`` and,
  with ``PGSTEADY_HEALTH_DETAILS=1``, ``/api/health/detailed``.
* ``POST /notes`` (write) and ``GET /notes/<id>`` (read) on the table ``example_notes``.

Run it with ``python examples/app/app.py`` (stdlib WSGI server; ``HOST``/``PORT``), or any
WSGI server: ``gunicorn 'app:create_app()'`` from this directory.  See README.md here.
"""

from __future__ import annotations

import logging
import os
import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from flask import Flask, abort, jsonify, request

from pgsteady.client import get_pool
from pgsteady.client.flask import health_blueprint

log = logging.getLogger("example_app")

#: Created at start-up if missing.  A real application runs its migrations through the
#: session-mode alias instead (docs/client.md, "Prepared statements and pooling").
SCHEMA = """
CREATE TABLE IF NOT EXISTS public.example_notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       text NOT NULL CHECK (pg_catalog.length(body) BETWEEN 1 AND 10000),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
)
"""
MAX_BODY = 10000


def create_app() -> Flask:
    """The application: health routes plus one write and one read route."""
    app = Flask(__name__)
    app.register_blueprint(health_blueprint(prefix=os.environ.get("HEALTH_PREFIX", "/api/health")))

    @app.post("/notes")
    def add_note() -> Any:
        data = request.get_json(silent=True) or {}
        body = data.get("body")
        if not isinstance(body, str) or not 1 <= len(body) <= MAX_BODY:
            return jsonify(error=f"body: a string of 1 to {MAX_BODY} characters"), 400

        def insert(cur: Any) -> tuple[int, str]:
            cur.execute(
                "INSERT INTO public.example_notes (body) VALUES (%s) RETURNING id, created_at",
                (body,),
            )
            note_id, created = cur.fetchone()
            return note_id, created.isoformat()

        # Not idempotent (each call inserts a row): never retried automatically.
        note_id, created = get_pool().run(insert)
        return jsonify(id=note_id, body=body, created_at=created), 201

    @app.get("/notes/<int:note_id>")
    def get_note(note_id: int) -> Any:
        def select(cur: Any) -> Any:
            cur.execute(
                "SELECT id, body, created_at FROM public.example_notes WHERE id = %s", (note_id,)
            )
            return cur.fetchone()

        row = get_pool().run(select, idempotent=True)  # a read may safely run twice
        if row is None:
            abort(404)
        return jsonify(id=row[0], body=row[1], created_at=row[2].isoformat())

    return app


def ensure_schema() -> None:
    get_pool().run(lambda cur: cur.execute(SCHEMA), idempotent=True)


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    ensure_schema()
    httpd = make_server(host, port, create_app(), server_class=ThreadingServer)
    log.info("listening on http://%s:%d", host, httpd.server_port)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
