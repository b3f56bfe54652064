"""The stack runs the repository's deploy/ files, and edge accepts its configuration."""

from __future__ import annotations

import pytest

from tests.support.topology import Topology

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def test_edge_t_accepts_the_deployed_configuration(stack: Topology) -> None:
    # compose: `edge -t` inside the edge container, on the mounted deploy/edge.yaml
    # with the static volume in place; local: on the rewritten copy.
    result = stack.check_edge_config()
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_appserver_replicas_by_default(stack: Topology) -> None:
    assert len(stack.appserver_replicas()) == 2
