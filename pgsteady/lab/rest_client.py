"""The lab's client certificate for Patroni's REST API (review R8 L1: every endpoint needs
one from the inventory's CA).

Made once beside the lab's CA, in ``cluster-access/`` (the directory `make switchover`
reads by default): ``client.crt`` and ``client.key`` (0600, clientAuth only), issued by
the CA in the lab's ``postgres_tls_ca_dir``, whose key is there on the deploy machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgsteady.ca_store import load_or_create_ca
from pgsteady.tls import CLIENT_ONLY, issue_server_cert

ACCESS_DIR = "cluster-access"
NAME = "pgsteady-lab"


def client_pair(ca_dir: Path) -> tuple[str, str]:
    """(certificate, key) paths under ``ca_dir/cluster-access``, issued when missing."""
    d = ca_dir / ACCESS_DIR
    cert, key = d / "client.crt", d / "client.key"
    if not (cert.exists() and key.exists()):
        ca = load_or_create_ca(ca_dir, ca_dir.name)
        cert_pem, key_pem = issue_server_cert(ca, [NAME], usages=CLIENT_ONLY)
        d.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        cert.write_bytes(cert_pem)
    return str(cert), str(key)
