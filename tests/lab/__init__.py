"""The lab: Debian 12 hosts with systemd as PID 1 in podman containers, reached over SSH.

Entry points: ``python -m lab up|down|status|fault`` (see ``docs/lab.md``) and :class:`lab.core.Lab`.
"""

PREFIX = "nti-lab-"
