"""metrics: the Prometheus exporters run hardened and healthy, answer over HTTPS only to a
client certificate of the inventory's metrics CA, report ``pg_up 1`` and pgsteady's fresh
textfile; they run as a uid of their own, never the server's, and hold no server key.

Skipped when ``metrics_enabled`` is False, or while the stack is stopped (container/running
fails then). The requests go from the host to the published
port (metrics_bind, 127.0.0.1 for a wildcard bind) with the host's verify client
certificate of the metrics CA (tls/metrics-client.crt, root 0600 key), through the host's
python3 (no curl needed).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import time
from typing import TYPE_CHECKING

import pytest

from pgsteady.settings import Settings
from pgsteady.stack import exporters
from pgsteady.tls import KEY_FILE
from pgsteady.verify import check

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Host

    WaitHealthy = Callable[[Host, str], None]

EXPORTERS = ("postgres-exporter", "node-exporter")
#: Scrapes of postgres-exporter, 2 s apart, before pg_up 0 counts.
PG_UP_SCRAPES = 3
#: The minute job may run this late before its textfile counts as stale.
TEXTFILE_MAX_AGE = 180

FETCH = """
import ssl, sys, urllib.request
url, ca, cert, key = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
if cert != "-":
    ctx.load_cert_chain(cert, key)
try:
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.stdout.write(f"REFUSED {type(e).__name__}: {e}")
    sys.exit(3)
"""


@pytest.fixture(scope="module", autouse=True)
def _enabled(on: Host, s: Settings) -> None:
    if not s.metrics_enabled:
        pytest.skip("metrics_enabled = False: no exporters")
    # `pgsteady-ctl down` stops the whole stack, the exporters with it: one failure there.
    state = (on.inspect("container", s.container_name) or {}).get("State") or {}
    if not state.get("Running"):
        pytest.skip("the stack is not running (see container/running)")


def _url(s: Settings, port: int) -> str:
    bind = ipaddress.ip_address(s.metrics_bind)
    address = "127.0.0.1" if bind.is_unspecified else str(bind)
    return f"https://{'[' + address + ']' if bind.version == 6 else address}:{port}/metrics"


def _fetch(on: Host, s: Settings, port: int, client_cert: bool = True) -> tuple[int, str]:
    tls = s.layout.tls
    cert, key = (
        (f"{tls}/{exporters.VERIFY_CLIENT_CERT}", f"{tls}/{exporters.VERIFY_CLIENT_KEY}")
        if client_cert
        else ("-", "-")
    )
    args = [_url(s, port), f"{tls}/{exporters.METRICS_CA}", cert, key]
    res = on.run(f"python3 -c {shlex.quote(FETCH)} {' '.join(map(shlex.quote, args))}")
    return res.rc, res.stdout


def _value(text: str, name: str) -> float | None:
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return float(m[1]) if m else None


def _port(s: Settings, exporter: str) -> int:
    return s.postgres_exporter_port if exporter == "postgres-exporter" else s.node_exporter_port


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.fix("{deploy} (starts the exporters with the stack)")
def test_exporter_healthy(on: Host, s: Settings, exporter: str, wait_healthy: WaitHealthy) -> None:
    wait_healthy(on, exporters.container_names(s)[exporter])


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_exporter_confined(on: Host, s: Settings, exporter: str) -> None:
    """The exporters' uid and gid (not root, not the server's), read-only root filesystem,
    no capabilities, no new privileges, a limit, no mount of the host's / or of the
    server's key."""
    name = exporters.container_names(s)[exporter]
    info = on.inspect("container", name)
    if info is None:
        pytest.skip(f"container {name} does not exist (see metrics/exporter_healthy)")
    user, host = info["Config"].get("User") or "0", info["HostConfig"]
    want = f"{s.metrics_exporter_uid}:{s.metrics_exporter_uid}"
    mounts = {m.get("Source"): m.get("Destination") for m in info.get("Mounts") or []}
    server_key = f"{s.layout.tls}/{KEY_FILE}"
    problems = [
        *(["runs as root"] if user.split(":")[0] in ("0", "root") else []),
        *([f"runs as {user}, not {want}"] if user != want else []),
        *(["mounts the host's /"] if "/" in mounts else []),
        *(["mounts the server's TLS key"] if server_key in mounts else []),
        *([] if host.get("ReadonlyRootfs") else ["writable root filesystem"]),
        *([] if host.get("CapDrop") == ["ALL"] else ["capabilities not dropped"]),
        *([] if "no-new-privileges:true" in (host.get("SecurityOpt") or []) else ["new privs"]),
        *([] if host.get("Memory") else ["no memory limit"]),
    ]
    check(not problems, f"{name}: {', '.join(problems)}")


@pytest.mark.fix("{deploy} (the exporter logs in as postgres_monitor_user over the socket)")
def test_postgres_exporter_pg_up(on: Host, s: Settings) -> None:
    # The scrape after a server restart finds the exporter's old connection broken and
    # reports pg_up 0 once; it reconnects for the next one.
    for _ in range(PG_UP_SCRAPES):
        rc, text = _fetch(on, s, s.postgres_exporter_port)
        check(rc == 0, f"{_url(s, s.postgres_exporter_port)}: {text.strip()[:200]}")
        up = _value(text, "pg_up")
        if up == 1:
            return
        time.sleep(2)
    check(
        False,
        f"postgres-exporter reports pg_up {up} in {PG_UP_SCRAPES} scrapes: it cannot "
        "query the server as the monitor role (docker logs of the exporter say why)",
    )


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_client_certificate_required(on: Host, s: Settings, exporter: str) -> None:
    rc, text = _fetch(on, s, _port(s, exporter), client_cert=False)
    check("Connection refused" not in text, f"{exporter}: {text.strip()[:200]}")
    check(
        rc != 0 and "# TYPE" not in text,
        f"{exporter} served metrics to a client without a certificate",
    )


@pytest.mark.fix("{paths.bin}/pgsteady-metrics (then look at the job's log)", on_host=True)
def test_textfile_fresh(on: Host, s: Settings) -> None:
    path = exporters.textfile_path(s)
    text = on.read(path)
    check(text is not None, f"{path} is missing: the metrics job has not run")
    written = _value(text or "", "pgsteady_textfile_timestamp_seconds")
    age = time.time() - (written or 0)
    check(
        age <= TEXTFILE_MAX_AGE,
        f"{path} was written {age:.0f} s ago (the job runs every minute; "
        f"{TEXTFILE_MAX_AGE} s at most)",
    )
    check(on.stat(path) == (0, 0, 0o644), f"{path} is not root-owned 0644")


def test_node_exporter_serves_textfile(on: Host, s: Settings) -> None:
    rc, text = _fetch(on, s, s.node_exporter_port)
    check(rc == 0, f"{_url(s, s.node_exporter_port)}: {text.strip()[:200]}")
    check(
        _value(text, "pgsteady_textfile_timestamp_seconds") is not None,
        "node-exporter does not serve pgsteady's textfile metrics",
    )
    check(
        _value(text, "pgsteady_filesystem_avail_bytes") is not None,
        "the textfile reports no filesystem of the host (pgsteady_filesystem_avail_bytes)",
    )
