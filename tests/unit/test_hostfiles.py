"""pgsteady.stack.hostfiles: the ownership rule for every path the deploy writes."""

from __future__ import annotations

import pytest

from pgsteady.settings import HostFacts, build_settings
from pgsteady.stack.hostfiles import layout, root_only, server_readable, writable_by_others


def _settings(**data: object):
    return build_settings(data, HostFacts(ram_mb=4096, cpus=2, has_systemd=False))


def test_root_only_refuses_a_mode_others_could_write() -> None:
    with pytest.raises(ValueError, match="another uid write"):
        root_only("/x", "664")
    assert root_only("/x", "700", directory=True).describe() == "0:0 0700"


def test_server_readable_is_root_owned_with_the_postgres_group() -> None:
    s = _settings(postgres_uid=70)
    f, d = server_readable(s, "/a/f"), server_readable(s, "/a", directory=True)
    assert (f.uid, f.gid, f.mode, d.mode) == (0, 70, "640", "750")
    assert f.fix() == "chown 0:70 /a/f && chmod 640 /a/f"


@pytest.mark.parametrize(
    ("uid", "mode", "bad"),
    [(0, 0o600, False), (0, 0o640, False), (0, 0o1777, True), (999, 0o600, True),
     (0, 0o620, True), (0, 0o602, True)],
)  # fmt: skip
def test_writable_by_others(uid: int, mode: int, bad: bool) -> None:
    assert (writable_by_others(uid, mode, root_only("/x", "600")) is not None) is bad


def test_layout_puts_root_files_out_of_the_servers_reach() -> None:
    s = _settings(app_dir="/srv/pg", backup_enabled=True)
    by_path = {o.path: o for o in layout(s)}
    root_used = [
        "/srv/pg/etc/ctl.env",
        "/srv/pg/etc/backup.json",
        "/srv/pg/docker-compose.yml",
        "/srv/pg/bin/pgsteady-ctl",
        "/srv/pg/etc",
        "/srv/pg/state",
        "/etc/cron.d/pgsteady-watchdog-pgsteady",
        "/etc/cron.d/pgsteady-backup-pgsteady",
    ]
    for path in root_used:
        o = by_path[path]
        assert (o.uid, o.gid) == (0, 0), path
    for path in ("/srv/pg/config/postgresql.conf", "/srv/pg/secrets/app_password", "/srv/pg/init"):
        assert (by_path[path].uid, by_path[path].gid) == (0, 999), path
    server_dirs = [o.path for o in layout(s) if o.directory and o.gid != 0]
    root_files = [o.path for o in layout(s) if o.gid == 0 and not o.directory]
    assert not [f for f in root_files for d in server_dirs if f.startswith(d + "/")]
    assert all(not int(o.mode, 8) & 0o022 for o in layout(s))


def test_layout_follows_the_scheduler() -> None:
    s = build_settings({}, HostFacts(ram_mb=4096, cpus=2, has_systemd=True))
    paths = {o.path for o in layout(s)}
    assert "/etc/systemd/system/pgsteady-watchdog-pgsteady.timer" in paths
    assert not any(p.startswith("/etc/cron.d/") for p in paths)


def test_layout_holds_the_metrics_files_and_none_for_the_servers_group() -> None:
    """Review M2: root's metrics files (the writer, its config, the textfile, the cache,
    the job) are root-only; the exporters' files are root-owned with the exporters' group,
    never the server's; nothing of them is listed with metrics off."""
    s = _settings(app_dir="/srv/pg", compose_project="shop")
    by_path = {o.path: o for o in layout(s)}
    for path, mode in {
        "/srv/pg/bin/pgsteady-metrics": "755",
        "/srv/pg/etc/metrics.json": "600",
        "/srv/pg/state/metrics": "755",
        "/srv/pg/state/metrics/pgsteady.prom": "644",
        "/srv/pg/state/metrics-cache.json": "600",
        "/srv/pg/tls/metrics-ca.crt": "644",
        "/srv/pg/tls/exporter.crt": "644",
        "/srv/pg/tls/metrics-client.crt": "644",
        "/srv/pg/tls/private/metrics-client.key": "600",
        "/etc/cron.d/pgsteady-metrics-shop": "644",
    }.items():
        assert (by_path[path].uid, by_path[path].gid, by_path[path].mode) == (0, 0, mode), path
    for path, mode in {
        "/srv/pg/config/exporter-web.yml": "640",
        "/srv/pg/config/postgres-exporter-queries.yaml": "640",
        "/srv/pg/tls/private/exporter.key": "440",
        "/srv/pg/secrets/monitor_password_exporter": "440",
    }.items():
        assert (by_path[path].uid, by_path[path].gid, by_path[path].mode) == (0, 64187, mode), path
    off = {o.path for o in layout(_settings(app_dir="/srv/pg", metrics_enabled=False))}
    assert not any("metrics" in p or "exporter" in p for p in off), off
