"""appserver's metrics-http in the deployments: on at :9192, and never published on the host."""

from __future__ import annotations

import configparser

import yaml

from tests.support.processes import REPO

APPSERVER_INI = REPO / "deploy" / "appserver.ini"
COMPOSE_FILE = REPO / "compose.yaml"
METRICS_PORT = 9192


def test_appserver_ini_serves_metrics_on_9192() -> None:
    ini = configparser.ConfigParser()
    ini.read_string(APPSERVER_INI.read_text())
    assert ini["uwsgi"]["metrics-http"] == f":{METRICS_PORT}"


def test_compose_publishes_no_metrics_port() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert "ports" not in services["appserver"]  # replicas: reached over the compose network
    for name, service in services.items():
        for mapping in service.get("ports", []):
            published = str(mapping.get("target") if isinstance(mapping, dict) else mapping)
            assert not published.endswith(str(METRICS_PORT)), (name, mapping)
