"""The options every superuser session pgsteady opens starts with (libpq ``PGOPTIONS``).

The application role owns its database, so it can attach settings to it
(``ALTER DATABASE app SET role = 'app'`` or ``SET default_transaction_read_only = on``)
that every later session into that database inherits. Options sent by the client at
connection time outrank database and role settings, so each superuser session pins:

- ``search_path=pg_catalog,pg_temp``: no function or operator the app created is resolved;
- ``role=none``: the session runs as the superuser it logged in as, never as the app;
- ``default_transaction_read_only=off``: its writes are not refused.

Shell scripts (files/bin/pgsteady-ctl, files/bin/pgsteady-pitr, the image's entrypoint)
and the backup tool's standalone zip repeat this string; tests/unit/test_session_options.py
keeps them equal.
"""

SUPERUSER_PGOPTIONS = (
    "-c search_path=pg_catalog,pg_temp -c role=none -c default_transaction_read_only=off"
)
