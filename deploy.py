"""pgsteady: converge each inventory host into a production-grade Postgres host.

    pyinfra inventory/<env>.py deploy.py

Every setting of every host is validated, and every preflight check run, before the
first operation; a host with a problem stops the run with the list of what to fix.
"""

from tasks import backup, docker, image, pgbackrest, postgres, preflight, schedule, secrets, tls
from tasks.settings import load_settings

settings = load_settings()
preflight.run(settings)
compose_cmd = docker.compose_command(settings)

docker.install(settings)
image_ops = image.ensure(settings)
secrets.ensure(settings)
tls_ops = tls.ensure(settings)  # before the server starts: ssl = on needs the files
pgbackrest_ops = pgbackrest.prepare(settings)  # bind-mounted repos and passphrases first
postgres.ensure(settings, compose_cmd, image_ops)
pgbackrest.ensure_stanza(settings, pgbackrest_ops)
tls.reload_on_change(settings, tls_ops)
backup.install(settings)
schedule.ensure(settings)
