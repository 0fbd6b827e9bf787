"""The roll lock's script (pgsteady/cluster/roll_lock.py) against 3 real etcd members with
auth on, as Patroni's etcd user with its client certificate (R9 M1(a), L2): renew fails
once the lease lapsed or the key lost it, an acquire that finds our own value takes it
as ours (the retry of a transaction whose answer was lost), the deploy's health wait
(etcd_service.wait_all_healthy, R9 H1) holds while one member is down, and make
remove-member holds the lock (R10 L2)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pgsteady.cluster import certs, etcd, removal_cli, roll_lock
from pgsteady.cluster import etcd_service as svc
from pgsteady.cluster.operations import OperationError
from pgsteady.cluster.tunnels import ClusterMember, cluster_members
from pgsteady.inventory import load_inventory
from tests.support.etcd_lab import EtcdLab, running_etcd


def _lock(lab: EtcdLab, *args: str) -> subprocess.CompletedProcess[str]:
    """LOCK_SCRIPT as a member runs it, with Patroni's etcd3 section pointing here."""
    cfg, pw = lab.tmp / "patroni.yml", lab.tmp / "patroni.password"
    if not cfg.exists():
        crt, key = certs.issue_etcd_client_cert(lab.ca, "m1")
        (lab.tmp / "patroni.crt").write_bytes(crt)
        (lab.tmp / "patroni.key").write_bytes(key)
        hosts = [u.removeprefix("https://") for u in etcd.client_urls(lab.cluster)]
        etcd3 = {
            "hosts": hosts,
            "cacert": str(lab.tmp / "ca.crt"),
            "cert": str(lab.tmp / "patroni.crt"),
            "key": str(lab.tmp / "patroni.key"),
            "username": "patroni",
        }
        doc = {"scope": lab.cluster.name, "namespace": "/service/", "etcd3": etcd3}
        cfg.write_text(yaml.safe_dump(doc))
        pw.write_text(lab.passwords["patroni"] + "\n")
    script = roll_lock.LOCK_SCRIPT % {
        "config": cfg,
        "key": roll_lock.KEY,
        "password": pw,
    }
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60
    )


def _key(lab: EtcdLab) -> str:
    return f"/service/{lab.cluster.name}/{roll_lock.KEY}"


def test_renew_fails_once_the_lock_is_no_longer_ours(tmp_path: Path) -> None:
    with running_etcd(tmp_path) as lab:
        value = roll_lock.Holder("deploy-a pid 1", "rolling recreate", "now").to_json()
        got = _lock(lab, "acquire", value, "60")
        assert got.returncode == 0 and got.stdout.startswith("ok "), got
        lease = got.stdout.split()[1]
        renewed = _lock(lab, "renew", lease)
        assert renewed.returncode == 0 and renewed.stdout.split() == ["ok", "60"], renewed

        # L2: the same value again (a transaction whose answer was lost) is ours, one lease
        again = _lock(lab, "acquire", value, "60")
        assert again.stdout.split() == ["ok", lease], again
        other = roll_lock.Holder("deploy-b pid 2", "rolling restart", "now").to_json()
        held = _lock(lab, "acquire", other, "60")
        assert held.stdout.startswith("held ") and "deploy-a pid 1" in held.stdout, held

        # the lease lapsed (revoked here: etcd then answers keepalive with TTL 0)
        assert lab.ctl("lease", "revoke", format(int(lease), "x"), user="root").returncode == 0
        lost = _lock(lab, "renew", lease)
        assert lost.returncode != 0 and "lost: the lock's lease" in lost.stderr, lost

        # another deploy holds the key now: our lease lives but the key carries theirs
        got = _lock(lab, "acquire", value, "60")
        lease = got.stdout.split()[1]
        assert lab.ctl("del", _key(lab), user="root").returncode == 0
        taken = _lock(lab, "acquire", other, "60")
        assert taken.stdout.startswith("ok "), taken
        lost = _lock(lab, "renew", lease)
        assert lost.returncode != 0 and "no longer carries lease" in lost.stderr, lost
        assert json.loads(_lock(lab, "show").stdout)["by"] == "deploy-b pid 2"

        # L4's runbook (docs/operations.md): a key put with no lease (a member's postgres
        # uid can) stops every deploy until the operator deletes it as etcd's root, the
        # password on etcdctl's stdin, with the member's own certificate
        assert lab.ctl("put", _key(lab), "\x1b[2Jstuck", user="root").returncode == 0
        assert _lock(lab, "acquire", value, "60").stdout.startswith("held ")
        member = (lab.tmp / "m1" / "server.crt", lab.tmp / "m1" / "server.key")
        cleared = lab.ctl(
            "--user", "root", "del", _key(lab), stdin=lab.passwords["root"] + "\n", pair=member
        )
        # etcdctl prompts "Password: " (and stty complains: no terminal), then prints 1
        assert cleared.returncode == 0 and cleared.stdout.split()[-1] == "1", cleared
        assert _lock(lab, "show").stdout.strip() == ""
        assert _lock(lab, "acquire", value, "60").stdout.startswith("ok ")


def test_the_health_wait_holds_while_a_member_is_down(tmp_path: Path) -> None:
    with running_etcd(tmp_path) as lab:
        ctl = [lab.etcdctl_bin, *etcd.etcdctl_base(
            etcd.client_urls(lab.cluster), str(tmp_path / "ca.crt"),
            str(tmp_path / "client.crt"), str(tmp_path / "client.key"),
        )[1:], "--dial-timeout=1s", "--command-timeout=2s"]  # fmt: skip
        wait = svc.wait_all_healthy(ctl, 3)
        ok = subprocess.run(["sh", "-c", wait], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        lab.stop("m3")
        down = subprocess.run(["sh", "-c", wait], capture_output=True, text=True, timeout=120)
        assert down.returncode == 1, down
        assert "not every member healthy after 3 s" in down.stderr


def test_remove_member_holds_the_roll_lock_and_is_refused_while_a_roll_holds_it(
    tmp_path: Path,
) -> None:
    """make remove-member takes the roll lock through the first remaining member that
    answers (review R10 L2): refused naming a roll that holds it; while the removal holds
    it, a roll's acquire is refused naming the removal; released at the end. The lock
    commands the CLI sends to a member's container run here, with this lab's etcd."""
    hosts = [(f"pg-{i}", {"ssh_hostname": f"10.9.9.{i}", "postgres_cluster_name": "main"})
             for i in range(1, 5)]  # fmt: skip
    inventory = tmp_path / "inv.py"
    inventory.write_text(f"hosts = ({hosts!r}, {{}})\n")
    staying = cluster_members(load_inventory(str(inventory)), None)[:3]
    (tmp_path / "etcd").mkdir()
    with running_etcd(tmp_path / "etcd") as lab:
        _lock(lab, "show")  # writes the member's Patroni configuration and password file
        calls: list[str] = []
        pg1 = {"answer lost": False}  # else pg-1 is unreachable

        def run(m: ClusterMember, command: str) -> tuple[bool, str, str]:
            """``docker exec -u postgres C python3 -c SCRIPT ...`` run on this machine."""
            argv = shlex.split(command)
            assert argv[:4] == ["docker", "exec", "-u", "postgres"], argv
            calls.append(f"{m.name} {argv[8]}")
            if m.name == "pg-1" and not pg1["answer lost"]:
                return False, "", "ssh: connect to host 10.9.9.1 port 22: No route to host"
            assert argv[5:7] == ["python3", "-c"], argv
            script = argv[7].replace(roll_lock.RUNNING_CONFIG, str(lab.tmp / "patroni.yml"))
            script = script.replace(roll_lock.PASSWORD_FILE, str(lab.tmp / "patroni.password"))
            proc = subprocess.run([sys.executable, "-c", script, *argv[8:]],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            if m.name == "pg-1":  # it ran in etcd, but ssh gave up before its answer came
                return False, "", "pg-1: no answer over ssh in 60 s"
            return proc.returncode == 0, proc.stdout, proc.stderr

        roll = roll_lock.Holder("deploy-a pid 1", "rolling restart", "now").to_json()
        got = _lock(lab, "acquire", roll, "60")
        with (
            pytest.raises(OperationError) as refused,
            removal_cli.roll_lock_held(staying, lab.cluster, "remove-member pg-4", run),
        ):
            pytest.fail("the removal ran under a roll's lock")
        assert "rolling restart by deploy-a pid 1 since now" in str(refused.value)
        assert "nothing was changed" in str(refused.value)
        assert _lock(lab, "release", got.stdout.split()[1]).returncode == 0

        calls.clear()
        with removal_cli.roll_lock_held(staying, lab.cluster, "remove-member pg-4", run) as keep:
            assert calls == ["pg-1 acquire", "pg-2 acquire"]  # pg-1 did not answer
            held = json.loads(_lock(lab, "show").stdout)
            assert held["operation"] == "remove-member pg-4", held
            other = _lock(lab, "acquire", roll, "60")
            assert other.stdout.startswith("held ") and "remove-member pg-4" in other.stdout
            keep()  # within KEEPALIVE_S of the acquire: nothing to renew yet
            assert calls == ["pg-1 acquire", "pg-2 acquire"]
        assert calls[-1] == "pg-2 release"
        assert _lock(lab, "show").stdout.strip() == ""  # free again

        # R11 L4: pg-1's acquire took the lock in etcd but its answer was lost to an ssh
        # timeout; the retry through pg-2 finds our own holder there and takes it as ours
        # (one lease, pg-1's), instead of being refused by our own name
        pg1["answer lost"] = True
        calls.clear()
        with removal_cli.roll_lock_held(staying, lab.cluster, "remove-member pg-4", run):
            assert calls == ["pg-1 acquire", "pg-2 acquire"]
            assert json.loads(_lock(lab, "show").stdout)["operation"] == "remove-member pg-4"
            leases = lab.ctl("lease", "list", user="root").stdout
            assert "found 1 leases" in leases, leases
        assert calls[-1] == "pg-2 release"
        assert _lock(lab, "show").stdout.strip() == ""
