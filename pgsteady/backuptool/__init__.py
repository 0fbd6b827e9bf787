"""pgsteady-backup: verified pg_dump backups of the Postgres container, with retention.

Runs ON the database host, from cron or a systemd timer, as root. The host has no
virtualenv, so every module of this package uses only the Python 3 standard library
and imports its siblings relatively (tests/unit/test_import_graph.py keeps both true, and
that the package has no import cycles); it stays compatible with Python 3.8 (the
integration tests run it with PGSTEADY_TEST_HOST_PYTHON=python3.8 where one is
installed). The deploy installs, in ``APP_DIR/bin/``::

    pgsteady-backup   (files/backup/pgsteady-backup: checks trust, then runs cli.main)
    backuptool.zip    (this package, built byte-identically by pgsteady.backup.artifact)

and runs ``python3 APP_DIR/bin/pgsteady-backup SUBCOMMAND --config APP_DIR/etc/backup.json``.
In the pgsteady package the same modules are ``pgsteady.backuptool.*``.

Modules, lower layers first (each imports only its own or lower layers; nothing imports
``cli``):

* shared helpers: ``errors`` (BackupError), ``log`` (stderr/syslog, clock),
  ``retention`` (naming, tiers, expiry; pure), ``layout`` (backup directory names and
  file operations), ``config`` (backup.json), ``manifest`` (sidecars, checksums),
  ``docker`` (commands in the container), ``runs`` (lock, status.json, failure hook),
  ``dump`` (one verified pg_dump / pg_dumpall -g);
* backup side: ``backup`` (``backup`` and ``verify``: tiers and retention);
* restore side: ``sql`` (quoting, hand-over SQL; pure), ``databases``, ``load``
  (pg_restore with the restore role), ``restore``, ``drill``;
* ``cli``: the argument parser, the only module that imports both sides.

A dump is written to a ``.tmp-`` name, fsynced, verified (pg_restore reads the whole
archive with config ``verify: "full"``, the default; ``"list"`` only its table of
contents), checksummed and only then renamed: a partial file never looks like a backup.
"""
