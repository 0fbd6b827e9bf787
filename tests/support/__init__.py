"""Harness shared by the test directories, imported by full name (``tests.support.stack``).

pyproject.toml's pytest ``pythonpath`` puts the repository root on ``sys.path``, so no test
edits ``sys.path`` to reach another directory's helpers:

- :mod:`tests.support.stack`: an isolated pgsteady stack converged by the real pyinfra CLI;
- :mod:`tests.support.sshd`: a throwaway OpenSSH server on 127.0.0.1;
- :mod:`tests.support.verify_run`: ``make verify`` / ``make deploy`` runs and what they printed.
- :mod:`tests.support.pyinfra_plan`: a ``tasks/`` function run without a host: facts in,
  operations (and their ``_if`` decisions) out.
"""
