"""Every copy of the superuser session options is the same string.

The shell scripts (pgsteady-ctl, pgsteady-pitr, the image's entrypoint) and the backup
tool's standalone zip cannot import pgsteady.postgres.session; they repeat its string.
What the options do on a real server: tests/integration/test_superuser_session_settings.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from pgsteady.backuptool.docker import SAFE_PGOPTIONS
from pgsteady.monitor.collect import PGOPTIONS_SAFE
from pgsteady.postgres.session import SUPERUSER_PGOPTIONS

REPO = Path(__file__).resolve().parents[2]
CTL = REPO / "files/bin/pgsteady-ctl"


def test_the_options_pin_search_path_role_and_read_only() -> None:
    assert SUPERUSER_PGOPTIONS.split(" -c ") == [
        "-c search_path=pg_catalog,pg_temp",
        "role=none",
        "default_transaction_read_only=off",
    ]


def test_every_copy_of_the_options_pins_role_and_read_only():
    """The Python constants and the shell scripts send the same options."""
    assert SAFE_PGOPTIONS == SUPERUSER_PGOPTIONS
    assert PGOPTIONS_SAFE.endswith(SUPERUSER_PGOPTIONS)
    ctl = re.search(r'^pg_options="([^"]*)"$', CTL.read_text(), re.M)
    assert ctl is not None and ctl.group(1) == SUPERUSER_PGOPTIONS
    assert f"PGOPTIONS={SUPERUSER_PGOPTIONS}" in (REPO / "files/bin/pgsteady-pitr").read_text()
    entry = (REPO / "files/image/docker-entrypoint.sh").read_text()
    assert f"PGOPTIONS='{SUPERUSER_PGOPTIONS}' psql_init" in entry
    assert '-c role=none -c default_transaction_read_only=off" \\\n\t\tpsql ' in entry


def test_every_upgrade_major_session_sends_the_options() -> None:
    """pgsteady-upgrade-major (sourced by pgsteady-ctl) opens its superuser sessions into
    the restored databases (row counts, the pg_stat_statements reset, vacuumdb), where the
    app's ALTER DATABASE ... SET role came along: each sends pgsteady-ctl's $pg_options,
    and the script sets no options of its own. pgBackRest's stanza-upgrade opens its own
    libpq session as the superuser, which reads PGOPTIONS: it gets them too."""
    text = (REPO / "files/bin/pgsteady-upgrade-major").read_text()
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    # One docker exec command per entry: its continuation lines joined.
    commands = re.split(r"(?=docker exec)", "\n".join(code).replace("\\\n", " "))
    client = r"\b(psql|vacuumdb|pgbackrest)\b"
    firsts = [c.split("\n")[0] for c in commands if c.startswith("docker exec")]
    sessions = [s for s in firsts if re.search(client, s)]
    clients = [re.search(client, s).group(1) for s in sessions]  # type: ignore[union-attr]
    assert clients == ["psql", "psql", "vacuumdb", "pgbackrest"]  # reset, counts, analyze, stanza
    for session in sessions:
        assert session.startswith(
            'docker exec -i -e "PGOPTIONS=$pg_options" '
        ) or session.startswith('docker exec -e "PGOPTIONS=$pg_options" '), session
    assert text.count("PGOPTIONS=") == len(sessions)


def test_pgsteady_ctl_gives_pgbackrest_the_options() -> None:
    """pgBackRest connects as the superuser with libpq, which reads PGOPTIONS: every
    pgbackrest that pgsteady-ctl runs in the container gets $pg_options (what the options
    do to a pgBackRest session on a real server: test_superuser_session_settings.py)."""
    text = CTL.read_text().replace("\\\n", " ")
    runs = [line for line in text.splitlines() if re.search(r"docker exec .*\bpgbackrest\b", line)]
    assert len(runs) == 2, runs  # `pgsteady-ctl pgbackrest ARGS`, pgbackrest-verify
    for line in runs:
        assert 'docker exec -u postgres -e "PGOPTIONS=$pg_options" ' in line, line
