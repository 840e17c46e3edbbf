"""Test hosts as Linux network namespaces (:mod:`workers.partition`), made and removed by the test
itself; a test that cannot make them (not root) skips, saying why."""

from __future__ import annotations

import pytest

from workers.partition import HostError, Network, cannot_make_hosts

__all__ = ["network"]


def network() -> Network:
    """A new network of test hosts, or a skip naming what this machine lacks."""
    reason = cannot_make_hosts()
    if reason:
        pytest.skip(f"network-namespace hosts: {reason}; CI runs as root")
    try:
        return Network()
    except HostError as exc:
        pytest.skip(f"cannot add a test address here: {exc}")
