"""edge.metrics (the shared cells), the observability config rules, and log_formats."""

from __future__ import annotations

import os

import pytest

from edge.accesslog import AccessEntry, AccessLogFormatter
from edge.config.load import ConfigErrors, parse_config
from edge.config.schema import (
    AccessRule,
    EdgeConfig,
    Location,
    LogFormatSpec,
    MetricsHandler,
    ReturnHandler,
    Server,
    StubStatusHandler,
)
from edge.handlers.observe import Readings, prometheus_text, stub_status_text
from edge.metrics import (
    ACCEPTED,
    HISTOGRAM_CELLS,
    MetricsBlock,
    MetricsLayout,
    WorkerMetrics,
    observe,
)

SITE = Location("/", "prefix", ReturnHandler(200))
METRICS = Location("= /metrics", "exact", MetricsHandler(), access=(AccessRule(False),))


def _config(*locations: Location) -> EdgeConfig:
    return EdgeConfig(servers=(Server(server_name=("site",), locations=locations),))


def test_a_dead_workers_counts_are_retained_and_never_doubled() -> None:
    config = _config(SITE, METRICS)
    block = MetricsBlock(4)
    block.layout.register(config)
    first = WorkerMetrics(config, block, block.claim(101))
    second = WorkerMetrics(config, block, block.claim(102))
    for _ in range(3):
        first.count_request(config.servers[0], SITE, 200)
    second.count_request(config.servers[0], SITE, 503)
    first.cells[ACCEPTED] += 5
    totals = block.totals()
    base = first.requests_base(config.servers[0], SITE)
    assert (totals[base + 1], totals[base + 4], totals[ACCEPTED]) == (3, 1, 5)
    block.release(first.slot)  # the master reaped it
    assert block.live_slots() == [second.slot]
    totals = block.totals()
    assert (totals[base + 1], totals[base + 4], totals[ACCEPTED]) == (3, 1, 5)
    # Its replacement gets the freed slot, starting from zero: the sum still adds up.
    third = WorkerMetrics(config, block, block.claim(103))
    assert third.slot == first.slot and third.cells[base + 1] == 0
    third.count_request(config.servers[0], SITE, 204)
    assert block.totals()[base + 1] == 4


def test_the_layout_keeps_indices_across_configs_and_never_reuses_them() -> None:
    layout = MetricsLayout()
    old = _config(SITE, METRICS)
    layout.register(old)
    kept = layout.requests_base("site", "/")
    extra = Location("/new/", "prefix", ReturnHandler(204))
    layout.register(_config(SITE, METRICS, extra))
    assert layout.requests_base("site", "/") == kept
    assert layout.requests_base("site", "/new/") > kept
    layout.register(old)  # the new location gone again: its cells stay its own
    assert layout.requests_base("site", "/new/") > kept


def test_a_layout_that_outgrows_its_cells_counts_into_the_sink() -> None:
    layout = MetricsLayout(capacity=40)
    indices = [layout.requests_base("s", f"/{i}/") for i in range(10)]
    assert layout.overflowed
    assert max(indices) + 5 <= 40 and min(indices) >= 0


def test_histograms_are_cumulative_in_the_exposition() -> None:
    config = EdgeConfig(
        servers=(Server(locations=(SITE, METRICS)),),
        upstreams=parse_config(
            "upstreams: {app: {servers: ['127.0.0.1:1']}}\n"
            "servers: [{listen: 1, locations: [{path: /, return: 204}]}]"
        ).upstreams,
    )
    metrics = WorkerMetrics(config)
    histograms = metrics.histograms("app")
    assert histograms is not None
    for seconds in (0.001, 0.004, 0.3, 20.0):
        observe(metrics.cells, histograms[0], seconds)
    text = prometheus_text(Readings(metrics.block)).decode()
    assert 'edge_http_request_duration_seconds_bucket{upstream="app",le="0.005"} 2' in text
    assert 'edge_http_request_duration_seconds_bucket{upstream="app",le="0.5"} 3' in text
    assert 'edge_http_request_duration_seconds_bucket{upstream="app",le="+Inf"} 4' in text
    assert 'edge_http_request_duration_seconds_count{upstream="app"} 4' in text
    assert 'edge_http_request_duration_seconds_sum{upstream="app"} 20.305' in text
    assert HISTOGRAM_CELLS == 16


def test_stub_status_text_is_nginx_s() -> None:
    config = _config(SITE, METRICS)
    metrics = WorkerMetrics(config)
    metrics.cells[ACCEPTED] += 7
    metrics.count_request(config.servers[0], SITE, 200)
    metrics.publish(
        {"connections": {"active": 3, "reading": 1, "writing": 1, "waiting": 1}, "pid": os.getpid()}
    )
    assert stub_status_text(Readings(metrics.block)) == (
        b"Active connections: 3 \nserver accepts handled requests\n 7 0 1 \n"
        b"Reading: 1 Writing: 1 Waiting: 1 \n"
    )


def test_counting_is_off_without_a_location_that_shows_it() -> None:
    config = _config(SITE)
    metrics = WorkerMetrics(config)
    assert not metrics.counting
    metrics.count_request(config.servers[0], SITE, 200)
    assert not any(metrics.block.totals())
    assert WorkerMetrics(_config(SITE, METRICS)).counting


@pytest.mark.parametrize(
    "handler", ["stub_status: true", "metrics: prometheus", "status_page: html"]
)
def test_an_observability_location_must_say_who_may_read_it(handler: str) -> None:
    text = f"servers: [{{listen: 1, locations: [{{path: /s, {handler}}}]}}]"
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text)
    assert "servers[0].locations[0].access: this location shows edge's own state" in str(
        caught.value
    )
    for access in ("[allow 127.0.0.1, deny all]", "[allow all]"):
        parse_config(
            f"servers: [{{listen: 1, locations: [{{path: /s, {handler}, access: {access}}}]}}]"
        )
    with pytest.raises(ConfigErrors):
        parse_config(
            f"servers: [{{listen: 1, locations: [{{path: /s, {handler}, access: [allow 10.0.0.0/8]}}]}}]"
        )


def test_stub_status_false_is_refused() -> None:
    with pytest.raises(ConfigErrors, match="false serves nothing here"):
        parse_config(
            "servers: [{listen: 1, locations: [{path: /s, stub_status: false, access: [deny all]}]}]"
        )
    assert StubStatusHandler().stub_status


def test_log_formats_are_checked() -> None:
    base = "servers: [{listen: 1, locations: [{path: /, return: 204}]}]\n"
    with pytest.raises(ConfigErrors, match=r"log_formats\.x\.format: unknown log variable \$nope"):
        parse_config(base + "log_formats: {x: '$status $nope'}\naccess_log: {format: x}")
    with pytest.raises(ConfigErrors, match="no log format 'y'"):
        parse_config(base + "log_formats: {x: '$status'}\naccess_log: {format: y}")
    config = parse_config(
        base + "log_formats: {x: {format: '$status', escape: json}}\naccess_log: {format: x}"
    )
    assert config.log_formats == (LogFormatSpec("x", "$status", "json"),)


def test_a_custom_format_escapes_as_nginx_does() -> None:
    entry = AccessEntry(
        remote_addr="10.0.0.1",
        time=0.0,
        request_line=b'GET /"q"\\\n HTTP/1.1',
        status=200,
        body_bytes_sent=5,
        http_user_agent=None,
        request_id="abc",
    )
    specs = (
        LogFormatSpec("j", '{"r":"$request","ua":"$http_user_agent","id":"${request_id}"}', "json"),
        LogFormatSpec("d", "$request $http_user_agent $status", "default"),
    )
    json_format = AccessLogFormatter("j", utc_offset=0, formats=specs)
    assert json_format.wants_request_id
    assert json_format.format(entry) == r'{"r":"GET /\"q\"\\\n HTTP/1.1","ua":"","id":"abc"}'
    default = AccessLogFormatter("d", utc_offset=0, formats=specs)
    assert not default.wants_request_id
    assert default.format(entry) == r"GET /\x22q\x22\x5C\x0A HTTP/1.1 - 200"
