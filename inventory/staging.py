"""Example: a staging host over SSH; deploy with `make deploy INVENTORY=inventory/staging.py`.

pyinfra connects with your SSH agent/keys; ssh_user needs root or passwordless sudo
(add `"_sudo": True` for a non-root user).
"""

hosts = [
    (
        "db-staging.example.internal",
        {
            "ssh_user": "deploy",
            "ssh_port": 22,
            "ssh_key": "~/.ssh/id_ed25519",
            "_sudo": True,
            # pgsteady settings for this host (docs/settings.md lists every key):
            "postgres_memory_limit": "2GB",
            "postgres_bind": "10.0.0.12",
            "postgres_allowed_networks": ["10.0.0.0/24"],
        },
    ),
]
