"""The one exception of the backup tool: a failure with a message fit for an operator."""

from __future__ import annotations


class BackupError(Exception):
    """A failure with a message fit for an operator."""
