"""Moved to :mod:`tests.support.sshd`; this re-export keeps ``import sshd`` working for
bench/sshd.py, which finds it on the tests/e2e path bench/stacks.py adds. Delete it once
bench imports ``tests.support.sshd``."""

from tests.support.sshd import SSHD, Sshd

__all__ = ["SSHD", "Sshd"]
