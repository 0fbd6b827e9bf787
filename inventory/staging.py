"""Example: a staging host over SSH; deploy with `make deploy INVENTORY=inventory/staging.py`.

pyinfra connects with your SSH agent/keys; ssh_user needs root or passwordless sudo
(add `"_sudo": True` for a non-root user). The host key is pinned: only a key in the
known_hosts file is accepted (pyinfra's default, "accept-new", trusts any key it has
not seen). In CI (`make ci`, docs/ci.md) the key and known_hosts come from the CI's
secret store through PGSTEADY_SSH_KEY_FILE / PGSTEADY_SSH_KNOWN_HOSTS_FILE.
"""

import os

hosts = [
    (
        "db-staging.example.internal",
        {
            "ssh_user": "deploy",
            "ssh_port": 22,
            "ssh_key": os.environ.get("PGSTEADY_SSH_KEY_FILE", "~/.ssh/id_ed25519"),
            "ssh_known_hosts_file": os.environ.get(
                "PGSTEADY_SSH_KNOWN_HOSTS_FILE", os.path.expanduser("~/.ssh/known_hosts")
            ),
            "ssh_strict_host_key_checking": "yes",
            "_sudo": True,
            # pgsteady settings for this host (docs/settings.md lists every key):
            "postgres_memory_limit": "2GB",
            "postgres_bind": "10.0.0.12",
            "postgres_allowed_networks": ["10.0.0.0/24"],
        },
    ),
]
