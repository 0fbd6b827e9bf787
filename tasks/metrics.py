"""The Prometheus exporters' files on the host and the textfile metrics writer.

``prepare`` runs before the stack starts (compose bind-mounts these files: a missing one
would become a directory); ``install`` puts pgsteady-metrics and its config in place and
writes the textfile once when either changed (the minute job keeps it fresh after that).
The exporter services themselves are in the compose file (pgsteady/stack/exporters.py).
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import files, server

from pgsteady.settings import Settings
from pgsteady.stack import exporters
from pgsteady.stack.hostfiles import exporter_readable, root_only, server_readable
from tasks import metrics_tls
from tasks.noop_guard import guarded_put
from tasks.ownership import directory_owned, put_owned

WRITER = Path(__file__).resolve().parent.parent / "files" / "bin" / "pgsteady-metrics"


@deploy("Metrics exporters")
def prepare(s: Settings) -> None:
    """The exporters' certificates, key and password copy (tasks/metrics_tls.py), web
    config, custom queries and textfile directory. Their files are readable by the
    exporters' uid, not the server's group."""
    metrics_tls.ensure(s)  # with metrics off: removes the exporters' keys and password copy
    if not s.metrics_enabled:
        return
    config = s.layout.config
    directory_owned(server_readable(s, config, directory=True), "Create the config directory")
    put_owned(
        exporters.render_web_config(), exporter_readable(s, f"{config}/{exporters.WEB_CONFIG}")
    )
    if exporters.QUERIES_SOURCE.is_file():
        put_owned(
            exporters.QUERIES_SOURCE.read_text(),
            exporter_readable(s, f"{config}/{exporters.QUERIES}"),
        )
    directory_owned(root_only(s.layout.state, "700", directory=True), "Create the state directory")
    # Root writes the textfile; node-exporter (nobody) reads it through a read-only mount.
    directory_owned(
        root_only(exporters.textfile_dir(s), "755", directory=True),
        "Create the textfile metrics directory",
    )


@deploy("Metrics textfile writer")
def install(s: Settings) -> None:
    """pgsteady-metrics and its root-only config; one run when either changed."""
    writer = f"{s.layout.bin}/pgsteady-metrics"
    config = f"{s.layout.etc}/metrics.json"
    ops = [
        guarded_put(
            name="Upload pgsteady-metrics",
            src=str(WRITER),
            dest=writer,
            user="root",
            group="root",
            mode="755",
        )
        if s.metrics_enabled
        else files.file(name=f"Remove {writer}", path=writer, present=False),
        guarded_put(
            name=f"Write {config}",
            src=StringIO(exporters.render_writer_config(s)),
            dest=config,
            user="root",
            group="root",
            mode="600",
        )
        if s.metrics_enabled
        else files.file(name=f"Remove {config}", path=config, present=False),
    ]
    if s.metrics_enabled:
        server.shell(
            name="Write the textfile metrics once",
            # A source out of reach (a repository down) is the job's to report every
            # minute; it does not fail the deploy.
            commands=[f"{writer} --config {config} || echo 'pgsteady-metrics: errors above' >&2"],
            _if=lambda: any(o.did_change() for o in ops),
        )
