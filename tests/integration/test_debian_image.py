"""The Debian-built Postgres image honours the official image's contract.

Real Docker engine, real images built by files/image/build-debian-image.sh
(reused when already present), real Postgres. Every container and volume made
here has a unique name and is removed by a finalizer; the images are kept.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import psycopg2
import pytest
from debian_images import (
    DOCKER_CLI,
    build_prerequisites_missing,
    debian_image_or_skip,
    engine_or_skip,
    host_debian_mirror,
    host_security_mirror,
)
from docker.models.containers import Container

from pgsteady.stack.image import POSTGRES_GID, POSTGRES_UID, SUITES, debian_recipe, shipped_files

pytestmark = pytest.mark.docker

VERSIONS = sorted(SUITES)
READY_TIMEOUT_S = 120
INIT_SCRIPTS = ("01-table.sql", "02-gz.sql.gz", "03-sourced.sh", "04-executable.sh")


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def client() -> Iterator[docker.DockerClient]:
    c = engine_or_skip()
    yield c
    c.close()


@pytest.fixture(scope="session")
def debian_images(client: docker.DockerClient) -> dict[int, str]:
    """Tag per version; builds the missing ones (about a minute each, first run only)."""
    return {v: debian_image_or_skip(client, v) for v in VERSIONS}


@dataclass
class Resources:
    """Creates uniquely named containers/volumes and removes them at teardown."""

    client: docker.DockerClient
    prefix: str
    containers: list[Container]
    volumes: list[str]

    def name(self, what: str) -> str:
        return f"{self.prefix}-{what}-{secrets.token_hex(3)}"

    def volume(self) -> str:
        vol = self.client.volumes.create(name=self.name("data"))
        self.volumes.append(vol.name)
        return vol.name

    def container(self, image: str, **kwargs: object) -> Container:
        c = self.client.containers.create(image, name=self.name("pg"), detach=True, **kwargs)
        self.containers.append(c)
        return c

    def cleanup(self) -> None:
        for c in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True, v=True)
        for name in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(name).remove(force=True)


def _resources(client: docker.DockerClient) -> Resources:
    return Resources(client, f"pgsteady-it-{uuid.uuid4().hex[:6]}", [], [])


@pytest.fixture
def res(client: docker.DockerClient, request: pytest.FixtureRequest) -> Resources:
    r = _resources(client)
    request.addfinalizer(r.cleanup)
    return r


@dataclass
class Inputs:
    """Host-side files mounted into a container."""

    password: str
    secret: Path
    initdb: Path

    def volumes(self, data_volume: str | None) -> dict[str, dict[str, str]]:
        vols = {
            str(self.secret): {"bind": "/run/secrets/postgres_password", "mode": "ro"},
            str(self.initdb): {"bind": "/docker-entrypoint-initdb.d", "mode": "ro"},
        }
        if data_volume:
            vols[data_volume] = {"bind": "/var/lib/postgresql/data", "mode": "rw"}
        return vols


def make_inputs(base: Path) -> Inputs:
    """A secret file (999, 0600) and an initdb.d with .sql, .sql.gz and two .sh scripts."""
    base.chmod(0o755)
    password = "pw-" + secrets.token_urlsafe(18)
    secret = base / "postgres_password"
    secret.write_text(password + "\n")
    os.chown(secret, POSTGRES_UID, POSTGRES_GID)
    secret.chmod(0o600)
    initdb = base / "initdb.d"
    initdb.mkdir(mode=0o755)
    initdb.chmod(0o755)
    log_sql = "CREATE TABLE IF NOT EXISTS init_runs (script text, at timestamptz DEFAULT now());"
    (initdb / INIT_SCRIPTS[0]).write_text(
        f"{log_sql}\nINSERT INTO init_runs (script) VALUES ('{INIT_SCRIPTS[0]}');\n"
    )
    (initdb / INIT_SCRIPTS[1]).write_bytes(
        gzip.compress(f"INSERT INTO init_runs (script) VALUES ('{INIT_SCRIPTS[1]}');\n".encode())
    )
    (initdb / INIT_SCRIPTS[2]).write_text(
        f'psql -v ON_ERROR_STOP=1 --dbname "$POSTGRES_DB" '
        f"-c \"INSERT INTO init_runs (script) VALUES ('{INIT_SCRIPTS[2]}')\"\n"
    )
    exe = initdb / INIT_SCRIPTS[3]
    exe.write_text(
        "#!/bin/sh\nset -eu\n"
        "psql -v ON_ERROR_STOP=1 -c "
        f"\"INSERT INTO init_runs (script) VALUES ('{INIT_SCRIPTS[3]}')\"\n"
    )
    for f in initdb.iterdir():
        f.chmod(0o644)
    exe.chmod(0o755)
    return Inputs(password, secret, initdb)


ENV = {
    "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
    "POSTGRES_USER": "postgres",
    "POSTGRES_DB": "appdb",
    "POSTGRES_INITDB_ARGS": "--data-checksums",
}


# --- helpers ----------------------------------------------------------------------


def wait_ready(c: Container, timeout: float = READY_TIMEOUT_S) -> float:
    """Wait until the real server accepts TCP (the init server has no TCP); return seconds."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        c.reload()
        if c.status in ("exited", "dead"):
            raise AssertionError(f"container {c.name} exited:\n{logs(c)}")
        if c.status == "running":
            code, _ = c.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"], user="postgres")
            if code == 0:
                return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{c.name} not ready after {timeout}s:\n{logs(c)}")


def wait_exit(c: Container, timeout: float = 60) -> int:
    return int(c.wait(timeout=timeout)["StatusCode"])


def logs(c: Container) -> str:
    return c.logs(stdout=True, stderr=True).decode(errors="replace")


def psql(c: Container, sql: str, db: str = "appdb") -> str:
    """Run SQL as the postgres OS user over the socket (peer auth); return unaligned output."""
    code, (out, err) = c.exec_run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA", "-d", db, "-c", sql],
        user="postgres",
        demux=True,
    )
    out_s = (out or b"").decode()
    assert code == 0, f"psql failed ({code}): {(err or b'').decode()}{out_s}"
    return out_s.strip()


def ip_of(c: Container) -> str:
    c.reload()
    return c.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]


def tcp_connect(c: Container, password: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(
        host=ip_of(c),
        port=5432,
        user="postgres",
        password=password,
        dbname="appdb",
        connect_timeout=5,
    )


@dataclass
class Cluster:
    version: int
    container: Container
    inputs: Inputs
    first_start_s: float


@pytest.fixture(scope="module", params=VERSIONS, ids=lambda v: f"pg{v}")
def cluster(
    request: pytest.FixtureRequest,
    client: docker.DockerClient,
    debian_images: dict[int, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Cluster:
    """One initialised server per version, shared by the read-only tests."""
    version: int = request.param
    r = _resources(client)
    request.addfinalizer(r.cleanup)
    inputs = make_inputs(tmp_path_factory.mktemp(f"pg{version}"))
    c = r.container(debian_images[version], environment=ENV, volumes=inputs.volumes(r.volume()))
    c.start()
    first_start = wait_ready(c)
    print(f"\n[measure] pg{version} first start (initdb + init scripts) {first_start:.1f}s")
    return Cluster(version, c, inputs, first_start)


# --- tests on a running cluster ---------------------------------------------------


def test_server_version_major(cluster: Cluster) -> None:
    num = int(psql(cluster.container, "SHOW server_version_num"))
    assert num // 10000 == cluster.version


def test_data_checksums_on(cluster: Cluster) -> None:
    assert psql(cluster.container, "SHOW data_checksums") == "on"


def test_init_scripts_ran_once_in_order(cluster: Cluster) -> None:
    rows = psql(cluster.container, "SELECT script FROM init_runs ORDER BY at, script")
    assert rows.splitlines() == list(INIT_SCRIPTS)
    assert psql(cluster.container, "SELECT current_database()") == "appdb"


def test_postmaster_runs_as_999(cluster: Cluster) -> None:
    pid = cluster.container.attrs["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    assert set(uids) == {str(POSTGRES_UID)}
    assert set(gids) == {str(POSTGRES_GID)}


def test_password_login_over_tcp(cluster: Cluster) -> None:
    with tcp_connect(cluster.container, cluster.inputs.password) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, inet_server_port()")
        assert cur.fetchone() == ("postgres", 5432)
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        tcp_connect(cluster.container, cluster.inputs.password + "x")


def test_pg_hba_has_no_trust(cluster: Cluster) -> None:
    hba_file = psql(cluster.container, "SHOW hba_file")
    code, out = cluster.container.exec_run(["cat", hba_file], user="postgres")
    assert code == 0
    rules = [
        line.split()
        for line in out.decode().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert rules, "pg_hba.conf has no rules"
    assert all("trust" not in rule for rule in rules), rules
    host_rules = [rule for rule in rules if rule[0].startswith("host")]
    assert host_rules and all(rule[-1] == "scram-sha-256" for rule in host_rules)
    # ... and the server loaded exactly that (no trust among the active rules).
    methods = psql(cluster.container, "SELECT DISTINCT auth_method FROM pg_hba_file_rules")
    assert set(methods.splitlines()) == {"peer", "scram-sha-256"}


def test_password_not_in_postmaster_environment(cluster: Cluster) -> None:
    pid = cluster.container.attrs["State"]["Pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {e.split(b"=", 1)[0] for e in environ if e}
    assert b"POSTGRES_PASSWORD" not in names
    assert cluster.inputs.password.encode() not in b"\0".join(environ)


# --- lifecycle tests (own containers) -----------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_clean_stop_restart_and_reuse_of_volume(
    version: int, debian_images: dict[int, str], res: Resources, tmp_path: Path
) -> None:
    inputs = make_inputs(tmp_path)
    volume = res.volume()
    first = res.container(debian_images[version], environment=ENV, volumes=inputs.volumes(volume))
    first.start()
    wait_ready(first)
    psql(first, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")

    first.stop(timeout=30)
    assert wait_exit(first) == 0
    out = logs(first)
    assert "database system is shut down" in out.splitlines()[-1]
    assert "received fast shutdown request" in out

    # Same container again: no second initialisation.
    first.start()
    wait_ready(first)
    assert psql(first, "SELECT count(*) FROM init_runs") == str(len(INIT_SCRIPTS))
    first.stop(timeout=30)
    assert wait_exit(first) == 0

    # A new container on the same named volume: data kept, init scripts not run again.
    second = res.container(debian_images[version], environment=ENV, volumes=inputs.volumes(volume))
    second.start()
    wait_ready(second)
    assert psql(second, "SELECT x FROM kept") == "42"
    assert psql(second, "SELECT count(*) FROM init_runs") == str(len(INIT_SCRIPTS))
    assert "skipping initialisation" in logs(second)
    assert "running /docker-entrypoint-initdb.d" not in logs(second)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_missing_password_refuses_to_initialise(
    version: int, debian_images: dict[int, str], res: Resources
) -> None:
    env = {"POSTGRES_DB": "appdb"}
    c = res.container(debian_images[version], environment=env)
    c.start()
    assert wait_exit(c) != 0
    out = logs(c)
    assert "no superuser password is set" in out
    assert "POSTGRES_PASSWORD_FILE" in out


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_unreadable_password_file_is_a_clear_error(
    version: int, debian_images: dict[int, str], res: Resources, tmp_path: Path
) -> None:
    inputs = make_inputs(tmp_path)
    os.chown(inputs.secret, 0, 0)  # 0600 root: the postgres user cannot read it
    c = res.container(debian_images[version], environment=ENV, volumes=inputs.volumes(None))
    c.start()
    assert wait_exit(c) != 0
    assert "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password is not readable" in logs(c)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_failing_init_script_fails_loudly_and_is_not_served_later(
    version: int, debian_images: dict[int, str], res: Resources, tmp_path: Path
) -> None:
    inputs = make_inputs(tmp_path)
    (inputs.initdb / "05-broken.sql").write_text("SELECT no_such_function();\n")
    (inputs.initdb / "05-broken.sql").chmod(0o644)
    c = res.container(debian_images[version], environment=ENV, volumes=inputs.volumes(res.volume()))
    c.start()
    assert wait_exit(c) != 0
    assert "05-broken.sql failed" in logs(c)
    c.start()  # the next start refuses the half-initialised data dir
    assert wait_exit(c) != 0
    assert "incomplete initialisation" in logs(c)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["-c", "max_connections=42"], "42"),
        (["postgres", "-c", "max_connections=43"], "43"),
        (["-c", "config_file=/etc/pgsteady/postgresql.conf"], "44"),
    ],
    ids=["dash-c", "postgres-dash-c", "config-file"],
)
def test_server_arguments(
    version: int,
    command: list[str],
    expected: str,
    debian_images: dict[int, str],
    res: Resources,
    tmp_path: Path,
) -> None:
    inputs = make_inputs(tmp_path)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir(mode=0o755)
    (conf_dir / "postgresql.conf").write_text("listen_addresses = '*'\nmax_connections = 44\n")
    (conf_dir / "postgresql.conf").chmod(0o644)
    vols = inputs.volumes(None)
    vols[str(conf_dir)] = {"bind": "/etc/pgsteady", "mode": "ro"}
    c = res.container(debian_images[version], environment=ENV, volumes=vols, command=command)
    c.start()
    wait_ready(c)
    assert psql(c, "SHOW max_connections") == expected
    if "config_file" in command[-1]:
        assert psql(c, "SHOW config_file") == "/etc/pgsteady/postgresql.conf"
    # The init scripts also ran under these arguments.
    assert psql(c, "SELECT count(*) FROM init_runs") == str(len(INIT_SCRIPTS))


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_image_metadata(
    version: int, debian_images: dict[int, str], client: docker.DockerClient
) -> None:
    cfg = client.images.get(debian_images[version]).attrs["Config"]
    assert cfg["Entrypoint"] == ["docker-entrypoint.sh"]
    assert cfg["Cmd"] == ["postgres"]
    assert cfg["StopSignal"] == "SIGINT"
    assert not cfg.get("User")
    assert "PGDATA=/var/lib/postgresql/data" in cfg["Env"]
    assert f"PG_MAJOR={version}" in cfg["Env"]
    assert "5432/tcp" in cfg["ExposedPorts"]
    assert cfg["Labels"]["io.pgsteady.suite"] == SUITES[version]


# --- the build script itself ---------------------------------------------------------


def _run_build(args: list[str]) -> subprocess.CompletedProcess[str]:
    script = shipped_files().build_script
    env = {**os.environ, "DOCKER": DOCKER_CLI}
    return subprocess.run(
        ["sh", str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_build_script_skips_a_present_image(
    version: int, debian_images: dict[int, str], client: docker.DockerClient, tmp_path: Path
) -> None:
    recipe = debian_recipe(version)
    before = client.images.get(recipe.tag).id
    start = time.monotonic()
    proc = _run_build(
        [
            str(version),
            recipe.suite,
            host_debian_mirror(),
            host_security_mirror(),
            recipe.tag,
            recipe.recipe_hash,
            str(tmp_path / "work"),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert "already present" in proc.stdout
    assert time.monotonic() - start < 10
    assert client.images.get(recipe.tag).id == before


def test_failed_build_leaves_no_image_and_no_rootfs(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    if build_prerequisites_missing():
        pytest.skip(build_prerequisites_missing())
    tag = f"pgsteady-test/failed-build:{secrets.token_hex(4)}"
    work = tmp_path / "work"
    proc = _run_build(
        [
            "17",
            "nosuchsuite",
            host_debian_mirror(),
            host_security_mirror(),
            tag,
            "b" * 64,
            str(work),
        ]
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "debootstrap failed" in proc.stderr
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)
    assert not list(work.glob("build.*"))


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_locales(version: int, debian_images: dict[int, str], res: Resources) -> None:
    c = res.container(debian_images[version], entrypoint=["locale", "-a"], network_mode="none")
    c.start()
    assert wait_exit(c) == 0
    assert {"C.utf8", "en_US.utf8"} <= set(logs(c).split())


# --- the build directory is root's alone (issue 11, item 3) ----------------------------

OTHER_UID = 4242


def _refusal_args(workdir: Path | str) -> list[str]:
    recipe = debian_recipe(17)
    return [
        "17",
        recipe.suite,
        host_debian_mirror(),
        host_security_mirror(),
        f"pgsteady-test/refused:{secrets.token_hex(4)}",
        "c" * 64,
        str(workdir),
    ]


def _plant(base: Path, case: str) -> tuple[Path, Path]:
    """An attacker's set-up for ``case``; returns (workdir to pass, file that must not appear)."""
    base.chmod(0o755)
    target = base / "root-wrote-here"
    work = base / "work"
    if case == "workdir-owned-by-other-uid":
        work.mkdir()
        (work / ".lock").symlink_to(target)
        os.chown(work, OTHER_UID, OTHER_UID)
        os.lchown(work / ".lock", OTHER_UID, OTHER_UID)
    elif case == "workdir-group-writable":
        work.mkdir(mode=0o770)
        work.chmod(0o770)
    elif case == "workdir-is-a-symlink":
        real = base / "real"
        real.mkdir(mode=0o700)
        os.chown(real, OTHER_UID, OTHER_UID)
        work.symlink_to(real)
        target = real / ".lock"
    elif case == "parent-owned-by-other-uid":
        parent = base / "parent"
        parent.mkdir(mode=0o755)
        os.chown(parent, OTHER_UID, OTHER_UID)
        work = parent / "work"
        target = work
    elif case == "parent-world-writable-not-sticky":
        parent = base / "parent"
        parent.mkdir()
        parent.chmod(0o777)
        work = parent / "work"
        target = work
    elif case == "ancestor-symlink-to-other-uid-dir":
        theirs = base / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, OTHER_UID, OTHER_UID)
        (base / "via").symlink_to(theirs)
        work = base / "via" / "deeper" / "work"
        target = theirs / "deeper"
    elif case == "lock-is-a-symlink":
        work.mkdir(mode=0o700)
        (work / ".lock").symlink_to(target)
    else:
        raise AssertionError(case)
    return work, target


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("workdir-owned-by-other-uid", f"owned by uid {OTHER_UID}, not root"),
        ("workdir-group-writable", "writable by other users (mode 770)"),
        ("workdir-is-a-symlink", "is a symlink"),
        ("parent-owned-by-other-uid", f"above the work directory is owned by uid {OTHER_UID}"),
        ("parent-world-writable-not-sticky", "above the work directory is writable by other"),
        (
            "ancestor-symlink-to-other-uid-dir",
            f"above the work directory is owned by uid {OTHER_UID}",
        ),
        ("lock-is-a-symlink", "lock file"),
    ],
)
def test_build_refuses_a_work_dir_another_uid_controls(
    case: str, reason: str, tmp_path: Path
) -> None:
    """Root neither writes through nor builds in a directory another uid could swap."""
    if os.geteuid() != 0:
        pytest.skip("the build script runs as root")
    work, must_not_exist = _plant(tmp_path, case)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    proc = _run_build(_refusal_args(work))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "WORKDIR" in proc.stderr and reason in proc.stderr, proc.stderr
    assert not must_not_exist.exists(), f"root wrote {must_not_exist}"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert "debootstrap" not in proc.stdout


def test_build_creates_its_work_dir_root_only(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the build script runs as root")
    tmp_path.chmod(0o755)
    work = tmp_path / "a" / "work"
    # A keyring that cannot exist stops the script right after the directory checks.
    env = {**os.environ, "DOCKER": DOCKER_CLI, "PGSTEADY_KEYRING": str(tmp_path / "none.gpg")}
    script = shipped_files().build_script
    proc = subprocess.run(
        ["sh", str(script), *_refusal_args(work)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 3 and "keyring" in proc.stderr, proc.stderr
    st = work.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700)
    assert (tmp_path / "a").stat().st_mode & 0o022 == 0


# --- signed packages, the security suite, package labels (item 4) ----------------------


def test_build_refuses_a_release_not_signed_by_the_keyring(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """--force-check-gpg: a Release file that does not verify aborts before any package."""
    if build_prerequisites_missing():
        pytest.skip(build_prerequisites_missing())
    wrong = Path("/usr/share/keyrings/debian-archive-bullseye-stable.gpg")
    if not wrong.exists():
        pytest.skip(f"{wrong} (a keyring that does not sign trixie) is not installed")
    tag = f"pgsteady-test/unsigned:{secrets.token_hex(4)}"
    recipe = debian_recipe(17)
    work = tmp_path / "work"
    env = {**os.environ, "DOCKER": DOCKER_CLI, "PGSTEADY_KEYRING": str(wrong)}
    args = [
        "17",
        recipe.suite,
        host_debian_mirror(),
        host_security_mirror(),
        tag,
        "d" * 64,
        str(work),
    ]
    proc = subprocess.run(
        ["sh", str(shipped_files().build_script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "debootstrap failed" in proc.stderr
    log = (work / f"build-{recipe.suite}-17.log").read_text()
    assert "signed by unknown key" in log or "Invalid Release signature" in log, log[-2000:]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)
    assert not list(work.glob("build.*"))


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_image_has_the_security_updates_and_says_which_postgres(
    version: int, debian_images: dict[int, str], client: docker.DockerClient, res: Resources
) -> None:
    """Built from SUITE + SUITE-security: postgresql-N is the newest either offers."""
    image = client.images.get(debian_images[version])
    labels = image.labels
    c = res.container(
        debian_images[version],
        entrypoint=["/bin/sh", "-c"],
        command=[
            "cat /etc/apt/sources.list; echo ---; "
            f"dpkg-query -W -f '${{Version}}\\n' postgresql-{version}; echo ---; "
            "apt-get -qq update >/dev/null 2>&1 || echo UPDATE-FAILED; "
            f"apt-cache policy postgresql-{version} | sed -n 's/^ *Candidate: //p'"
        ],
    )
    c.start()
    assert wait_exit(c, timeout=180) == 0, logs(c)
    sources, installed, candidate = (part.strip() for part in logs(c).split("---"))
    assert f"{host_security_mirror()} {SUITES[version]}-security main" in sources
    assert labels["io.pgsteady.postgres-package"] == installed
    assert f"PG_VERSION={installed}" in image.attrs["Config"]["Env"]
    assert len(labels["io.pgsteady.packages"]) == 64
    if "UPDATE-FAILED" in candidate:
        pytest.skip("the Debian mirror is not reachable from a container here")
    assert candidate == installed, f"postgresql-{version} {installed} is older than {candidate}"


def test_refresh_keeps_an_image_whose_packages_did_not_change(
    debian_images: dict[int, str], client: docker.DockerClient, tmp_path: Path
) -> None:
    """make update-image on a current host rebuilds, finds nothing new, keeps the image."""
    recipe = debian_recipe(15)
    before = client.images.get(recipe.tag).id
    args = [
        "15",
        recipe.suite,
        host_debian_mirror(),
        host_security_mirror(),
        recipe.tag,
        recipe.recipe_hash,
        str(tmp_path / "work"),
    ]
    env = {**os.environ, "DOCKER": DOCKER_CLI, "PGSTEADY_REFRESH": "1"}
    proc = subprocess.run(
        ["sh", str(shipped_files().build_script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "debootstrap minbase" in proc.stdout  # it did rebuild ...
    assert "no package changed" in proc.stdout  # ... and kept the present image
    assert client.images.get(recipe.tag).id == before


# --- the official image's contract (item 11; docker-library's postgres-* tests) ---------

SPACED = {
    "POSTGRES_USER": "my cool postgres user",
    "POSTGRES_PASSWORD": "my cool postgres password",
    "POSTGRES_DB": "my cool postgres database",
}


def _spaced_initdb(base: Path) -> Path:
    """initdb.d with .sql, .sql.gz, a sourced and an executable .sh, and a file ignored."""
    initdb = base / "initdb.d"
    initdb.mkdir(mode=0o755)
    initdb.chmod(0o755)
    (initdb / "a.sql").write_text(
        "CREATE TABLE test (a INT, b INT, c VARCHAR(255));\n"
        "INSERT INTO test VALUES (1, 2, 'hello');\n"
        "INSERT INTO test VALUES (2, 3, 'goodbye!');\n"
        "DELETE FROM test WHERE a = 1;\n"
    )
    (initdb / "b.sql.gz").write_bytes(gzip.compress(b"CREATE TABLE gz (x text);\n"))
    (initdb / "c.sh").write_text(
        "docker_process_sql -c \"INSERT INTO gz VALUES ('sourced as $POSTGRES_USER')\"\n"
    )
    (initdb / "d.sh").write_text(
        '#!/bin/sh\nset -eu\npsql -v ON_ERROR_STOP=1 -c "INSERT INTO gz VALUES (current_user)"\n'
    )
    (initdb / "rubbish_doc_file").write_text("not a script\n")
    for f in initdb.iterdir():
        f.chmod(0o644)
    (initdb / "d.sh").chmod(0o755)
    return initdb


def _tcp(c: Container, env: dict[str, str]) -> psycopg2.extensions.connection:
    return psycopg2.connect(
        host=ip_of(c),
        port=5432,
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=env["POSTGRES_DB"],
        connect_timeout=5,
    )


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_official_contract_user_and_db_with_spaces(
    version: int, debian_images: dict[int, str], res: Resources, tmp_path: Path
) -> None:
    """postgres-basics and postgres-initdb, plus initdb args and a separate WAL directory."""
    env = {
        **SPACED,
        "POSTGRES_INITDB_ARGS": "--data-checksums --encoding=LATIN1 --locale=C",
        "POSTGRES_INITDB_WALDIR": "/var/lib/postgresql/wal",
    }
    vols = {str(_spaced_initdb(tmp_path)): {"bind": "/docker-entrypoint-initdb.d", "mode": "ro"}}
    c = res.container(debian_images[version], environment=env, volumes=vols)
    c.start()
    wait_ready(c)
    conn = _tcp(c, env)
    conn.autocommit = True
    with conn.cursor() as cur:
        # postgres-initdb: the .sql ran in POSTGRES_DB.
        cur.execute("SELECT count(*), min(c) FROM test")
        assert cur.fetchone() == (1, "goodbye!")
        cur.execute("SELECT x FROM gz ORDER BY x")
        assert [r[0] for r in cur.fetchall()] == [
            SPACED["POSTGRES_USER"],
            f"sourced as {SPACED['POSTGRES_USER']}",
        ]
        # postgres-basics: create, count, insert, delete, drop; JIT is available.
        cur.execute("CREATE TABLE basics (a INT, b INT, c VARCHAR(255))")
        cur.execute("INSERT INTO basics VALUES (1, 2, 'hello'), (2, 3, 'goodbye!')")
        cur.execute("DELETE FROM basics WHERE a = 1")
        cur.execute("SELECT count(*), min(c) FROM basics")
        assert cur.fetchone() == (1, "goodbye!")
        cur.execute("DROP TABLE basics")
        cur.execute("SET jit = on; SELECT pg_jit_available()")
        assert cur.fetchone() == (True,)
        # POSTGRES_INITDB_ARGS and POSTGRES_INITDB_WALDIR reached initdb.
        cur.execute("SELECT current_user, current_database(), current_setting('data_checksums')")
        assert cur.fetchone() == (SPACED["POSTGRES_USER"], SPACED["POSTGRES_DB"], "on")
        cur.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database "
            "WHERE datname = current_database()"
        )
        assert cur.fetchone() == ("LATIN1", "C")
    conn.close()
    code, out = c.exec_run(["readlink", "/var/lib/postgresql/data/pg_wal"])
    assert code == 0 and out.decode().strip() == "/var/lib/postgresql/wal"
    # The socket (peer, through the pg_ident.conf map) works for the spaced superuser too.
    code, out = c.exec_run(
        [
            "psql",
            "-XtA",
            "-U",
            SPACED["POSTGRES_USER"],
            "-d",
            SPACED["POSTGRES_DB"],
            "-c",
            "SELECT current_user",
        ],
        user="postgres",
    )
    assert (code, out.decode().strip()) == (0, SPACED["POSTGRES_USER"])
    assert "ignoring /docker-entrypoint-initdb.d/rubbish_doc_file" in logs(c)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"pg{v}")
def test_official_contract_file_variables(
    version: int, debian_images: dict[int, str], res: Resources, tmp_path: Path
) -> None:
    """POSTGRES_PASSWORD_FILE, POSTGRES_USER_FILE and POSTGRES_DB_FILE, values with spaces."""
    tmp_path.chmod(0o755)
    mounts: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for name, value in SPACED.items():
        f = tmp_path / name.lower()
        f.write_text(value + "\n")
        os.chown(f, POSTGRES_UID, POSTGRES_GID)
        f.chmod(0o600)
        mounts[str(f)] = {"bind": f"/run/secrets/{name.lower()}", "mode": "ro"}
        env[f"{name}_FILE"] = f"/run/secrets/{name.lower()}"
    c = res.container(debian_images[version], environment=env, volumes=mounts)
    c.start()
    wait_ready(c)
    conn = _tcp(c, SPACED)
    with conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == (SPACED["POSTGRES_USER"], SPACED["POSTGRES_DB"])
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        _tcp(c, {**SPACED, "POSTGRES_PASSWORD": "wrong"})


@pytest.mark.parametrize("version", VERSIONS[-1:], ids=lambda v: f"pg{v}")
def test_superuser_name_with_a_double_quote_is_a_clear_error(
    version: int, debian_images: dict[int, str], res: Resources
) -> None:
    env = {**SPACED, "POSTGRES_USER": 'my "quoted" user'}
    c = res.container(debian_images[version], environment=env)
    c.start()
    assert wait_exit(c) != 0
    assert "POSTGRES_USER must not contain a double quote" in logs(c)
