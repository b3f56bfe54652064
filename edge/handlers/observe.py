"""Edge's own state over HTTP: ``stub_status``, Prometheus ``metrics`` and the status page.

Every figure is summed over all the master's workers, whichever worker the
request reached: counters from the shared cells (``edge.metrics``), states
from the workers' snapshots (``edge.observe``).  The answering worker
publishes its own snapshot first, so its figures are current to the request
(the request itself is one of the ``writing`` connections, as in nginx).

- ``stub_status``: ``ngx_http_stub_status_module``'s text, byte for byte.
- ``metrics: prometheus``: the text exposition format 0.0.4, rendered with
  ``promtext`` (shared with appserver: each family's HELP and TYPE, label
  values escaped, histograms cumulative with ``+Inf``, ``_sum`` and
  ``_count``); ``promtool check metrics`` passes on it (tests/integration/test_edge_metrics.py).
- ``status_page: html``: one page, no framework; a small script polls the
  ``json`` page (``status_page: json``) once a second and computes req/s.

These are the whole answer in memory, built per request: they are scraped
every few seconds, not on the request path.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from edge.config.schema import Location, MetricsHandler, StatusPageHandler, StubStatusHandler
from edge.exchange import EdgeError, Exchange
from edge.metrics import (
    ACCEPTED,
    FAMILIES,
    FAMILY,
    HANDLED,
    LAST_RELOAD,
    RELOAD_FAILURES,
    RELOADS,
    RESTARTS,
    STATUS_CLASSES,
    MetricsBlock,
    series_values,
)
from edge.observe import publish
from edge.status_page import STATUS_PAGE
from promtext import CONTENT_TYPE, exposition, histogram_lines, label_text, number

if TYPE_CHECKING:
    from edge.state import ServerState

PROMETHEUS_TYPE = CONTENT_TYPE.encode()


class Readings:
    """One consistent read of the block: the cell totals and the live workers' snapshots."""

    def __init__(self, block: MetricsBlock) -> None:
        self.layout = block.layout
        self.totals = block.totals()
        self.snapshots = block.snapshots()
        self.workers = len(block.live_slots())

    def connections(self) -> dict[str, int]:
        summed = {"active": 0, "reading": 0, "writing": 0, "waiting": 0}
        for snapshot in self.snapshots:
            for key, value in snapshot.get("connections", {}).items():
                if key in summed:
                    summed[key] += int(value)
        return summed

    def requests(self) -> int:
        return sum(
            sum(values)
            for series, values in series_values(self.totals, self.layout)
            if series.family == "edge_http_requests_total"
        )

    def peers(self) -> list[dict[str, Any]]:
        """Each peer once: up only if up in every worker; failures and conns summed."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for snapshot in self.snapshots:
            for peer in snapshot.get("peers", []):
                key = (peer["upstream"], peer["peer"])
                found = merged.get(key)
                if found is None:
                    merged[key] = dict(peer)
                else:
                    found["up"] = found["up"] and peer["up"]
                    found["down"] = found["down"] or peer["down"]
                    found["backup"] = found["backup"] or peer["backup"]
                    found["fails"] += peer["fails"]
                    found["conns"] += peer["conns"]
        return [merged[key] for key in sorted(merged)]

    def errors(self, limit: int = 20) -> list[dict[str, Any]]:
        lines = {
            (entry[0], entry[1], entry[2])
            for snapshot in self.snapshots
            for entry in snapshot.get("errors", [])
        }
        newest = sorted(lines, reverse=True)[:limit]
        return [{"time": when, "level": level, "line": line} for when, level, line in newest]


# --- stub_status --------------------------------------------------------------------------


def stub_status_text(readings: Readings) -> bytes:
    """nginx's exact format (ngx_http_stub_status_module.c), trailing spaces included."""
    conns = readings.connections()
    totals = readings.totals
    return (
        f"Active connections: {conns['active']} \n"
        "server accepts handled requests\n"
        f" {totals[ACCEPTED]} {totals[HANDLED]} {readings.requests()} \n"
        f"Reading: {conns['reading']} Writing: {conns['writing']} "
        f"Waiting: {conns['waiting']} \n"
    ).encode("ascii")


# --- Prometheus ------------------------------------------------------------------------------


def _counter_samples(readings: Readings) -> dict[str, list[str]]:
    samples: dict[str, list[str]] = {}
    for series, values in series_values(readings.totals, readings.layout):
        family = FAMILY[series.family]
        lines = samples.setdefault(series.family, [])
        if series.family == "edge_http_requests_total":
            for status_class, value in zip(STATUS_CLASSES, values, strict=True):
                labels = label_text((*series.labels, ("status", status_class)))
                lines.append(f"{series.family}{labels} {value}")
        elif family.kind == "histogram":
            lines.extend(histogram_lines(series.family, series.labels, values))
        elif series.index == LAST_RELOAD:
            lines.append(f"{series.family} {number(values[0] / 1000)}")
        else:
            lines.append(f"{series.family}{label_text(series.labels)} {values[0]}")
    return samples


def _state_samples(readings: Readings) -> dict[str, list[str]]:
    samples: dict[str, list[str]] = {}
    for key, value in readings.connections().items():
        samples[f"edge_connections_{key}"] = [f"edge_connections_{key} {value}"]
    samples["edge_workers"] = [f"edge_workers {readings.workers}"]
    fields = (
        ("edge_upstream_peer_up", "up"),
        ("edge_upstream_peer_down", "down"),
        ("edge_upstream_peer_backup", "backup"),
        ("edge_upstream_peer_failures", "fails"),
        ("edge_upstream_peer_active_connections", "conns"),
    )
    for peer in readings.peers():
        labels = label_text((("upstream", peer["upstream"]), ("peer", peer["peer"])))
        for family, key in fields:
            samples.setdefault(family, []).append(f"{family}{labels} {int(peer[key])}")
    return samples


def prometheus_text(readings: Readings) -> bytes:
    samples = _counter_samples(readings)
    for family, lines in _state_samples(readings).items():
        samples.setdefault(family, []).extend(lines)

    return exposition(FAMILIES, samples)


# --- the status page -------------------------------------------------------------------------


def status_document(readings: Readings) -> dict[str, Any]:
    totals = readings.totals
    upstreams: dict[str, list[dict[str, Any]]] = {}
    for peer in readings.peers():
        upstreams.setdefault(peer["upstream"], []).append(peer)
    requests = []
    for series, values in series_values(totals, readings.layout):
        if series.family == "edge_http_requests_total" and any(values):
            labels = dict(series.labels)
            requests.append(
                {**labels, **dict(zip(STATUS_CLASSES, values, strict=True)), "total": sum(values)}
            )
    return {
        "time": time.time(),
        "pid": os.getpid(),
        "workers": [
            {
                "pid": snapshot.get("pid"),
                "generation": snapshot.get("generation"),
                "connections": snapshot.get("connections", {}),
            }
            for snapshot in sorted(readings.snapshots, key=lambda s: s.get("pid", 0))
        ],
        "connections": {
            **readings.connections(),
            "accepted": totals[ACCEPTED],
            "handled": totals[HANDLED],
        },
        "requests_total": readings.requests(),
        "requests": requests,
        "upstreams": [{"name": name, "peers": peers} for name, peers in upstreams.items()],
        "errors": readings.errors(),
        "reloads": totals[RELOADS],
        "reload_failures": totals[RELOAD_FAILURES],
        "last_reload": totals[LAST_RELOAD] / 1000,
        "worker_restarts": totals[RESTARTS],
    }


# --- the handlers ------------------------------------------------------------------------------


class _Observer:
    """A location that answers from the block; GET and HEAD only."""

    reads_body = False
    content_type = b"text/plain"

    def __init__(self, location: Location, state: ServerState) -> None:
        self.location = location
        self.state = state

    def body(self, readings: Readings) -> bytes:
        raise NotImplementedError

    async def handle(self, exchange: Exchange) -> None:
        request, response = exchange.request, exchange.response
        if request.method not in ("GET", "HEAD"):
            raise EdgeError(
                f"{request.method} is not allowed here",
                status=405,
                level="info",
                headers=((b"Allow", b"GET, HEAD"),),
            )
        publish(self.state)
        body = self.body(Readings(self.state.metrics.block))
        await response.send_head(
            200,
            [
                (b"Content-Type", self.content_type),
                (b"Content-Length", b"%d" % len(body)),
                (b"Cache-Control", b"no-store"),
            ],
        )
        if request.method != "HEAD":
            await response.send(body)
        await response.end()


class StubStatus(_Observer):
    def body(self, readings: Readings) -> bytes:
        return stub_status_text(readings)


class PrometheusMetrics(_Observer):
    content_type = PROMETHEUS_TYPE

    def body(self, readings: Readings) -> bytes:
        return prometheus_text(readings)


class StatusPage(_Observer):
    def __init__(self, location: Location, state: ServerState, settings: StatusPageHandler) -> None:
        super().__init__(location, state)
        self.settings = settings
        if settings.format == "json":
            self.content_type = b"application/json"
        else:
            self.content_type = b"text/html; charset=utf-8"
            self._page = STATUS_PAGE.replace("__JSON_URL__", json.dumps(settings.json_url)).encode(
                "utf-8"
            )

    def body(self, readings: Readings) -> bytes:
        if self.settings.format == "json":
            return json.dumps(status_document(readings), separators=(",", ":")).encode()
        return self._page

    async def handle(self, exchange: Exchange) -> None:
        await super().handle(exchange)


def observer_for(
    location: Location, state: ServerState
) -> StubStatus | PrometheusMetrics | StatusPage:
    settings = location.handler
    if isinstance(settings, StubStatusHandler):
        return StubStatus(location, state)
    if isinstance(settings, MetricsHandler):
        return PrometheusMetrics(location, state)
    assert isinstance(settings, StatusPageHandler)
    return StatusPage(location, state, settings)
