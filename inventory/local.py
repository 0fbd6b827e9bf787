"""The default inventory: this machine itself, with the defaults of group_data/all.py."""

hosts = ["@local"]
