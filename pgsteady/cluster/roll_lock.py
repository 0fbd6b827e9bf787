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

from pgsteady.cluster.member_service import PATRONI_DIR

KEY = "pgsteady-roll"
RUNNING_CONFIG = f"{PATRONI_DIR}/10-pgsteady.yml"
TTL_S = 900
PASSWORD_FILE = "/run/secrets/etcd_patroni_password"

#: ``python3 -c LOCK_SCRIPT ACTION [VALUE TTL | LEASE]``, as the postgres user in a member's
#: container. Where etcd is, its CA, the client certificate and the user are Patroni's own
#: (its running configuration, PATRONI_DIR/10-pgsteady.yml); the password is read from
#: its secret file. ACTION: show (prints the value, empty when free), acquire (prints
#: ``ok LEASE`` or ``held VALUE``), renew LEASE (prints ``ok TTL``; exits non-zero
#: with ``lost: ...`` when the lease has lapsed, etcd answering TTL 0, or the key no
#: longer carries that lease), release LEASE. Acquire grants ONE lease however many
#: etcd hosts it tries: when a transaction committed but its answer was lost, the next
#: host finds the key holding our own value and takes it as ours (R9 L2).
LOCK_SCRIPT = r"""
import base64, json, ssl, sys, urllib.request, yaml
action, rest = sys.argv[1], sys.argv[2:]
with open("%(config)s") as f:
    cfg = yaml.safe_load(f)
etcd = cfg["etcd3"]
key = cfg["namespace"].rstrip("/") + "/" + cfg["scope"] + "/%(key)s"
ctx = ssl.create_default_context(cafile=etcd["cacert"])
ctx.load_cert_chain(etcd["cert"], etcd["key"])
b64 = lambda s: base64.b64encode(s.encode()).decode()
def post(url, path, body, token=None):
    req = urllib.request.Request(url + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", token)
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        return json.loads(r.read() or b"{}")
errors, lease = [], None
for hostport in etcd["hosts"]:
    url = "https://" + hostport
    try:
        with open("%(password)s") as f:
            pw = f.read().strip()
        auth = {"name": etcd["username"], "password": pw}
        token = post(url, "/v3/auth/authenticate", auth)["token"]
        call = lambda path, body: post(url, path, body, token)
        if action == "show":
            kvs = call("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
            print(base64.b64decode(kvs[0]["value"]).decode() if kvs else "")
        elif action == "acquire":
            value, ttl = rest
            if lease is None:
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
                kvs = r["responses"][0]["response_range"].get("kvs") or []
                held = base64.b64decode(kvs[0].get("value", "")).decode() if kvs else ""
                theirs = str(kvs[0].get("lease", "0")) if kvs else "0"
                if theirs != str(lease):
                    call("/v3/lease/revoke", {"ID": lease})
                if held == value and theirs != "0":
                    print("ok", theirs)
                else:
                    print("held", held or "?")
        elif action == "renew":
            answer = call("/v3/lease/keepalive", {"ID": rest[0]}).get("result") or {}
            if int(answer.get("TTL", 0)) <= 0:
                sys.exit("lost: the lock's lease " + rest[0] + " has lapsed (TTL 0)")
            r = call("/v3/kv/txn", {"compare": [{"key": b64(key), "result": "EQUAL",
                                                 "target": "LEASE", "lease": rest[0]}]})
            if not r.get("succeeded"):
                sys.exit("lost: the lock key no longer carries lease " + rest[0])
            print("ok", answer["TTL"])
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
            fields = (doc["by"], doc["operation"], doc["since"])
        except (ValueError, KeyError, TypeError):
            return cls("unknown", printable(text), "?")
        return cls(*(printable(str(f)) for f in fields))

    def describe(self) -> str:
        return f"{self.operation} by {self.by} since {self.since}"


def printable(text: str, limit: int = 80) -> str:
    """``text`` without control or other non-printable characters (a lock value is
    written by whoever can write the key: no terminal escapes reach the operator's
    screen), at most ``limit`` characters."""
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


class LockUnreadable(ValueError):
    """The lock could not be read on a member whose container runs."""


def script_argv(action: str, *rest: str) -> list[str]:
    """``python3 -c LOCK_SCRIPT ACTION ...`` for ``docker exec -u postgres`` in a member."""
    script = LOCK_SCRIPT % {"config": RUNNING_CONFIG, "key": KEY, "password": PASSWORD_FILE}
    return ["python3", "-c", script, action, *rest]


def show_command(docker: str, container: str) -> str:
    """A shell command printing the lock's value (empty: free), for facts and verify."""
    return shlex.join([docker, "exec", "-u", "postgres", container, *script_argv("show")])


def fact_command(docker: str, container: str) -> str:
    """The deploy's read of the lock (R9 L1): ``read`` then the value when the member's
    container runs and answered; ``read`` alone when it does not run (nothing to ask: a
    new member); ``unreadable`` then the error when it runs but the read failed."""
    running = shlex.join([docker, "inspect", "-f", "{{.State.Running}}", container])
    show = show_command(docker, container)
    return (
        f"if {running} 2>/dev/null | grep -qx true; then "
        f"if out=$({show} 2>/dev/null); then printf 'read\\n%s\\n' \"$out\"; "
        f"else echo unreadable; {show} 2>&1 >/dev/null | tail -n 3; fi; else echo read; fi"
    )


def parse_fact(text: str) -> Holder | None:
    """The holder from :func:`fact_command`'s output (None: free), or
    :class:`LockUnreadable` when the read failed or answered nothing recognisable
    (a failed read never counts as free)."""
    status, _, rest = text.strip().partition("\n")
    if status == "read":
        return Holder.parse(rest)
    lines = [line for line in rest.strip().splitlines() if line.strip()]
    why = printable(lines[-1], 300) if lines else "no answer"
    raise LockUnreadable(f"the roll lock in etcd could not be read: {why}")
