"""pgsteady benchmarks: ``make bench`` (``python -m bench``) measures recovery, tuning,
backups and converge on this machine and writes docs/benchmarks.md and .json.

Every figure comes from real stacks converged with the real pyinfra CLI (the e2e
harness in tests/support/stack.py), real Postgres in Docker, pgbench and the real backup
tool. Comparisons are alternated within one session and reported as ratios with their
spread, because the machine is shared and noisy.
"""
