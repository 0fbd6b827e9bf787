"""A lab of real hosts for tests and operators: containers with systemd, sshd and a disk.

``python -m pgsteady.lab up|down|hosts`` (``make lab`` / ``make lab-down``) and the fault
helpers of :mod:`pgsteady.lab.faults` (``python -m pgsteady.lab reboot HOST`` ...).
"""
