"""Example: production over SSH; `make deploy INVENTORY=inventory/production.py`.

Settings shared by every host of this file go in `group_data/production.py`
(the group is named after this file); per-host settings go in the tuple below.
"""

hosts = [
    (
        "db1.example.internal",
        {
            "ssh_user": "deploy",
            "_sudo": True,
            "postgres_bind": "10.0.1.10",
            "postgres_allowed_networks": ["10.0.1.0/24"],
            "postgres_memory_limit": "12GB",
            "postgres_db_type": "oltp",
            "backup_schedule": "30 1 * * *",
            "backup_on_failure_command": "/usr/local/bin/notify-oncall 'pgsteady backup failed'",
        },
    ),
]
