"""Disposable Debian 12 hosts for Ansible and testinfra: systemd-nspawn on overlayfs, no Docker.

``python -m tests.testbed up --hosts 2 --workdir DIR`` boots hosts and writes ``DIR/inventory.ini``
and ``DIR/inventory.yml``; ``python -m tests.testbed down --workdir DIR`` removes everything.
``--network bridge`` puts all hosts on one bridge so that they reach each other (multi-host
training); ``--bind-ro``/``--bind`` mount directories of this machine into every host.
Pytest fixtures use :func:`testbed` (a context manager that always tears down).
"""

from tests.testbed.bed import Host, Testbed, TestbedError, testbed

__all__ = ["Host", "Testbed", "TestbedError", "testbed"]
