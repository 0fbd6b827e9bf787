"""Backups and point-in-time recovery: pgBackRest configuration (database hosts and
backup hosts), the WAL archive listing, and the shipped backup tool's artifact and
configuration."""
