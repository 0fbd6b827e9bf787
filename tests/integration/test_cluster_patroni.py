"""The rendered Patroni configuration checked by the REAL Patroni (4.0.7, .venv-patroni):
`patroni --validate-config` on the directory Patroni will read (10-pgsteady.yml and the
0600 90-secrets.yml, merged in name order), for every member of a 3-member cluster.

Patroni's validator dials the etcd hosts and refuses a listen port already taken,
so the test listens on the etcd addresses and checks that a taken port is refused.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsteady.cluster import patroni
from pgsteady.cluster.topology import Cluster, cluster_from_mapping
from tests.support.cluster_binaries import patroni as patroni_bin
from tests.support.cluster_binaries import require_file
from tests.support.ports import free_port

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
BIN_DIR = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = cluster_from_mapping(
        {
            "postgres_cluster_name": "itest",
            "members": [{"name": f"m{i}", "address": a} for i, a in enumerate(ADDRESSES, 1)],
            "etcd_client_port": free_port(),
            "patroni_rest_port": free_port(),
            "postgres_member_port": free_port(),
        }
    )
    listeners = []
    for m in c.etcd_members:  # stand-ins the validator can dial
        s = socket.socket()
        s.bind((m.address, c.etcd_client_port))
        s.listen()
        listeners.append(s)
    yield c
    for s in listeners:
        s.close()


def write_config(tmp: Path, c: Cluster, name: str) -> Path:
    conf = tmp / f"conf-{name}"
    conf.mkdir(mode=0o700)
    paths = dataclasses.replace(
        patroni.container_paths(15), data_dir=str(tmp / f"data-{name}"), bin_dir=str(BIN_DIR)
    )
    dcs = patroni.dcs_document(
        c, {"shared_buffers": "128MB", "ssl": "on"}, ["hostssl all all 0.0.0.0/0 scram-sha-256"]
    )
    (conf / "10-pgsteady.yml").write_text(patroni.render_patroni_yml(c, c.member(name), paths, dcs))
    secrets = conf / "90-secrets.yml"
    secrets.touch(mode=0o600)
    secrets.write_text(
        patroni.render_secrets_yml("su-pw", "repl-pw", "rewind-pw", "rest-pw", "etcd-pw")
    )
    return conf


def validate(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [patroni_bin(), "--validate-config", str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_patroni_validates_every_members_rendered_config(cluster: Cluster, tmp_path: Path) -> None:
    require_file(str(BIN_DIR / "pg_ctl"), "postgresql-15")
    for m in cluster.members:
        conf = write_config(tmp_path, cluster, m.name)
        proc = validate(conf)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert os.stat(conf / "90-secrets.yml").st_mode & 0o077 == 0


def test_the_validator_reads_what_was_rendered(cluster: Cluster, tmp_path: Path) -> None:
    """The control: with m1's REST port taken, Patroni refuses m1's rendered listen."""
    conf = write_config(tmp_path, cluster, "m1")
    with socket.socket() as taken:
        taken.bind((ADDRESSES[0], cluster.rest_port))
        taken.listen()
        proc = validate(conf)
    assert proc.returncode != 0
    assert f"Port {cluster.rest_port} is already in use" in proc.stdout + proc.stderr
