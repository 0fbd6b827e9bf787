"""One rolling change at a time (issue 16, item 6): a lock key in the cluster's etcd.

Patroni has no lock for operations of this kind, so pgsteady keeps one key,
``<cluster prefix>pgsteady-roll`` (inside the prefix Patroni's etcd role may write;
Patroni ignores keys it does not know). It is created with one etcd transaction that
succeeds only when the key does not exist (``create_revision == 0``), attached to a lease
of :data:`TTL_S` seconds that the holder renews after each step: two deploys cannot both
hold it, and a deploy that dies leaves it for at most one lease.

:data:`LOCK_SCRIPT` runs inside a member's Postgres container as the postgres user (its
local access: Patroni's etcd client certificate and password file), over etcd's JSON
gateway with TLS verified against the cluster CA. The password is read from its file in
the container, never passed in argv or printed. The value names the holder, the
operation and when it started; ``make status`` and ``make verify`` show it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from pgsteady.cluster.etcd import PATRONI_USER
from pgsteady.cluster.patroni import container_paths
from pgsteady.cluster.topology import Cluster

KEY = "pgsteady-roll"
TTL_S = 900
PASSWORD_FILE = "/run/secrets/etcd_patroni_password"

#: ``python3 -c LOCK_SCRIPT ACTION URLS KEY CA CERT KEYFILE USER PWFILE [VALUE TTL | LEASE]``
#: ACTION: show (prints the value or nothing), acquire (prints ``ok LEASE`` or
#: ``held VALUE``), renew LEASE, release LEASE. URLS: comma-separated etcd client URLs.
LOCK_SCRIPT = r"""
import base64, json, ssl, sys, urllib.request
action, urls, key, ca, cert, keyfile, user, pwfile = sys.argv[1:9]
rest = sys.argv[9:]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, keyfile)
b64 = lambda s: base64.b64encode(s.encode()).decode()
def post(url, path, body, token=None):
    req = urllib.request.Request(url + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", token)
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        return json.loads(r.read() or b"{}")
errors = []
for url in urls.split(","):
    try:
        with open(pwfile) as f:
            pw = f.read().strip()
        token = post(url, "/v3/auth/authenticate", {"name": user, "password": pw})["token"]
        call = lambda path, body: post(url, path, body, token)
        if action == "show":
            kvs = call("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
            print(base64.b64decode(kvs[0]["value"]).decode() if kvs else "")
        elif action == "acquire":
            value, ttl = rest
            lease = call("/v3/lease/grant", {"TTL": int(ttl)})["ID"]
            r = call("/v3/kv/txn", {
                "compare": [{"key": b64(key), "result": "EQUAL", "target": "CREATE",
                             "create_revision": "0"}],
                "success": [{"request_put": {"key": b64(key), "value": b64(value),
                                             "lease": lease}}],
                "failure": [{"request_range": {"key": b64(key)}}]})
            if r.get("succeeded"):
                print("ok", lease)
            else:
                call("/v3/lease/revoke", {"ID": lease})
                kvs = r["responses"][0]["response_range"].get("kvs") or []
                print("held", base64.b64decode(kvs[0]["value"]).decode() if kvs else "?")
        elif action == "renew":
            call("/v3/lease/keepalive", {"ID": rest[0]})
        elif action == "release":
            call("/v3/lease/revoke", {"ID": rest[0]})
        sys.exit(0)
    except (OSError, ValueError, KeyError) as exc:
        errors.append(f"{url}: {exc}")
sys.exit("etcd: " + "; ".join(errors))
"""


@dataclass(frozen=True)
class Holder:
    """Who holds the lock: a deploy on ``by`` doing ``operation`` since ``since``."""

    by: str
    operation: str
    since: str

    def to_json(self) -> str:
        return json.dumps({"by": self.by, "operation": self.operation, "since": self.since})

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder in a lock value (None for an empty value: nobody holds it)."""
        text = text.strip()
        if not text:
            return None
        try:
            doc = json.loads(text)
            return cls(str(doc["by"]), str(doc["operation"]), str(doc["since"]))
        except (ValueError, KeyError, TypeError):
            return cls("unknown", text[:80], "?")

    def describe(self) -> str:
        return f"{self.operation} by {self.by} since {self.since}"


def lock_key(cluster: Cluster) -> str:
    return f"{cluster.prefix}{KEY}"


def script_argv(cluster: Cluster, postgres_version: int, action: str, *rest: str) -> list[str]:
    """``python3 -c LOCK_SCRIPT ...`` for ``docker exec -u postgres`` in a member."""
    paths = container_paths(postgres_version)
    hosts = [f"[{m.address}]" if ":" in m.address else m.address for m in cluster.etcd_members]
    urls = ",".join(f"https://{h}:{cluster.etcd_client_port}" for h in hosts)
    return [
        "python3", "-c", LOCK_SCRIPT, action, urls, lock_key(cluster), paths.ca_file,
        paths.etcd_cert_file, paths.etcd_key_file, PATRONI_USER, PASSWORD_FILE, *rest,
    ]  # fmt: skip


def show_command(container: str, cluster: Cluster, postgres_version: int) -> str:
    """A shell command printing the lock's value (empty: free), for facts and status."""
    argv = ["docker", "exec", "-u", "postgres", container]
    return shlex.join([*argv, *script_argv(cluster, postgres_version, "show")])
