"""Every pgsteady setting with its default. Override per environment in the inventory.

This file documents the defaults; pgsteady/settings.py validates every value (a unit
test keeps the two equal). Sizes take B, kB, MB, GB, TB (powers of 1024); durations
take ms, s, m, h.
"""

# --- layout ------------------------------------------------------------------------
app_dir = "/opt/pgsteady"  # everything on the host: compose file, config/, secrets/, backups/
compose_project = "pgsteady"  # compose project; the container is <compose_project>-postgres

# --- image -------------------------------------------------------------------------
postgres_version = 17  # major version, 13-18 (the debian source builds 15 or 17)
postgres_image_source = "auto"  # registry | debian (built on the host) | archive | auto
postgres_image = None  # image to pull or load; default postgres:<version>
postgres_image_archive = None  # tarball on the host for postgres_image_source = archive
postgres_debian_mirror = None  # Debian mirror for the debian source; default: host's apt sources
postgres_debian_security_mirror = None  # archive of <suite>-security; default: host's apt sources
postgres_uid = 999  # uid/gid of postgres in the image; its group reads config/, init/, secrets

# --- network -----------------------------------------------------------------------
postgres_port = 5432  # port published on the host
postgres_bind = "127.0.0.1"  # address the port is published on (0.0.0.0 = every interface)
postgres_allowed_networks = ["samenet"]  # pg_hba networks (CIDR, samenet, samehost); scram only
# TLS on every address. Default: a CA per inventory (.pgsteady/<inventory>/ beside the
# inventory file, on the deploy machine) issues each host's certificate, renewed by a
# converge 30 days before it expires. Or supply your own (paths on the deploy machine):
postgres_tls_cert_file = None  # server certificate (PEM), with the two below
postgres_tls_key_file = None  # its unencrypted private key (PEM)
postgres_tls_ca_file = None  # the CA that issued it: what clients verify with
postgres_tls_ca_dir = None  # where the generated CA lives (default .pgsteady/<inventory>)
postgres_tls_extra_names = []  # more DNS names/addresses the certificate lists

# --- database ----------------------------------------------------------------------
postgres_db = "app"  # the application's database
postgres_user = "app"  # the application's owner role (LOGIN, not superuser)
postgres_readonly_user = None  # an optional read-only role, e.g. "app_ro"
postgres_monitor_user = "monitor"  # LOGIN role with pg_monitor (password: secrets/monitor_password)
postgres_extensions = ["pg_stat_statements", "pg_trgm"]  # created in postgres_db
postgres_schema_files = []  # local SQL files applied in order as postgres_user (idempotent!)

# --- resources and tuning ----------------------------------------------------------
postgres_memory_limit = "auto"  # container memory limit; auto = 75% of host RAM
postgres_cpus = "auto"  # container CPU limit; auto = all host CPUs
postgres_shm_size = "256MB"  # /dev/shm for parallel queries
postgres_db_type = "web"  # tuning profile: web | oltp | dw | desktop | mixed
postgres_storage = "ssd"  # tuning for: ssd | hdd | san | nvme
postgres_max_connections = None  # default: the profile's (web 200, oltp 300, dw 40 ...)
postgres_settings = {}  # postgresql.conf overrides, checked against the server's own list
# fsync/full_page_writes off and managed keys (hba_file, include*, ssl*) are refused;
# synchronous_commit = off loses the last acknowledged commits on a crash: opt in here
postgres_accept_async_commit_loss = False

# --- container behaviour -----------------------------------------------------------
postgres_restart_policy = "always"  # always | unless-stopped | on-failure | no
postgres_stop_grace_period = "60s"  # time for a clean shutdown before SIGKILL
postgres_healthy_timeout = "300s"  # the deploy fails if not healthy within this
healthcheck_interval = "10s"  # pg_isready every ...
healthcheck_timeout = "5s"  # ... with this timeout
healthcheck_retries = 3  # consecutive failures before "unhealthy"
healthcheck_start_period = "60s"  # failures during start-up do not count

# --- docker ------------------------------------------------------------------------
docker_packages = "debian"  # debian (docker.io + docker-compose) | docker-ce (Docker's repo)
docker_log_max_size = "10m"  # container log file size before rotation
docker_log_max_file = 5  # rotated log files kept

# --- preflight ---------------------------------------------------------------------
preflight_min_ram = "1GB"  # refuse hosts with less RAM
preflight_min_disk = "2GB"  # refuse when app_dir's filesystem has less free space

# --- backups -----------------------------------------------------------------------
backup_enabled = True  # schedule backups (cron.d, or a systemd timer under systemd)
backup_dir = None  # default <app_dir>/backups
backup_schedule = "15 2 * * *"  # cron expression or @hourly/@daily/@weekly/@monthly
backup_keep_days = 7  # daily backups kept
backup_keep_weeks = 4  # weekly backups kept
backup_keep_months = 6  # monthly backups kept
backup_on_failure_command = None  # shell command run when a backup fails (mail, webhook)
# The watchdog (every minute) starts a container that is down, not stopped on purpose,
# not paused/restarting, and whose restart policy is not "no". A start that does not stay
# up makes it wait watchdog_backoff, doubling up to watchdog_backoff_max; from the third
# such start on it reports a crash loop (logger, app_dir/state/watchdog.json, the command).
watchdog_backoff = "60s"  # wait after a start that did not stay up; doubles each time
watchdog_backoff_max = "1h"  # longest wait between two watchdog starts
watchdog_on_failure_command = None  # shell command run when the watchdog reports a crash loop
postgres_restore_on_empty = False  # empty volume restores the newest backup; debian source only

# --- pgBackRest: continuous WAL archiving, physical backups, point-in-time recovery ----
# On by default: needs the pgBackRest inside pgsteady's Debian-built image (source debian,
# or auto, which then builds it); registry/archive images must set pgbackrest_enabled=False.
pgbackrest_enabled = True  # archive_mode=on, archive_command = pgbackrest archive-push
pgbackrest_stanza = "main"  # the stanza (one per cluster) in every repository
# Repositories, repo1 first. kind "posix": a host directory (default
# <app_dir>/pgbackrest/repoN), owned by the server's uid, encrypted (aes-256-cbc) with a
# passphrase generated on the host in <app_dir>/secrets/pgbackrest/repoN.conf. kind "host"
# (with "host": a name of the inventory's `backup` group): that host's repository, which
# survives the loss of this one; its passphrase is made once on the deploy machine (beside
# the CA) and reaches both hosts over the deploy's SSH. Local + off-host is the usual pair:
# [{"kind": "posix"}, {"kind": "host", "host": "backup1"}]
pgbackrest_repos = [
    {"kind": "posix", "path": None, "host": None, "retention_full": 2, "retention_diff": 6}
]
pgbackrest_archive_timeout = "60s"  # archive_timeout: the most WAL time a host loss loses
# WAL not yet archived that may pile up in pg_wal; beyond it pgBackRest drops it (the
# archive gets a gap: PITR across it fails until the next full backup) so that a dead
# repository never fills the disk and stops the server.
pgbackrest_archive_queue_max = "1GB"
pgbackrest_process_max = 1  # parallel compression/transfer processes (backup, async push)
# Off-host repositories ({"kind": "host", "host": "<name>"} in pgbackrest_repos; the host is
# in the inventory's `backup` group): both ends run pgBackRest's TLS server on this port,
# with certificates from the inventory's CA.
pgbackrest_tls_port = 8432
pgbackrest_address = None  # how other hosts reach this one (default: ssh_hostname or name)
pgbackrest_full_schedule = "30 1 * * 0"  # full backup (cron syntax; Sundays 01:30)
pgbackrest_diff_schedule = "30 1 * * 1-6"  # differential backup (Mondays to Saturdays)
pgbackrest_verify_schedule = "30 4 * * 0"  # pgbackrest verify: checksums of the repository
