"""Stop Postgres on every inventory host, keeping its data volume: `make down`."""

from pyinfra.operations import server

from tasks.settings import load_database_settings

settings = load_database_settings()
if settings is not None:
    server.shell(
        name=f"Stop {settings.container_name} (data kept)",
        commands=[f"{settings.layout.bin}/pgsteady-ctl down"],
    )
