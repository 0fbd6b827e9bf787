"""pgsteady: converge each inventory host into a production-grade Postgres host.

    pyinfra inventory/<env>.py deploy.py

The converge is one deploy function (tasks/converge.py), which a project with its own
pyinfra deploy file can call as well.
"""

from tasks.converge import converge

converge()
