"""The host-loss drill's parts: a writer that remembers what was acknowledged, and the
loss itself (the whole lab host, or what pgsteady keeps on it)."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime

import psycopg2

from pgsteady.lab.engine import docker


class Writer:
    """Commits a row with its commit time every 100 ms; remembers the acknowledged ones."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.acked: list[datetime] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = psycopg2.connect(self.dsn, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(
                        "INSERT INTO public.rpo (at) VALUES (clock_timestamp()) RETURNING at"
                    )
                    self.acked.append(cur.fetchone()[0])
                    time.sleep(0.1)
        except psycopg2.Error as exc:  # the host went away under the writer
            self.errors.append(str(exc).strip())
        finally:
            with contextlib.suppress(psycopg2.Error):
                conn.close()


def lose_pgsteady_data(host: str, project: str, app_dir: str) -> None:
    """What a host loss takes from pgsteady: the containers (killed, not stopped), the data
    and socket volumes, app_dir (secrets, local repository, config). Docker and the
    image stay, so the replacement converge skips the image build."""
    script = (
        f"docker rm -f {project}-postgres {project}-pgbackrest >/dev/null 2>&1; "
        f"docker volume rm {project}_pgdata {project}_pgrun >/dev/null; "
        f"rm -rf --one-file-system {app_dir}"
    )
    docker("exec", host, "sh", "-c", script, timeout=120)
