"""wrk's text report -> WrkResult (no wrk, no servers)."""

from __future__ import annotations

import pytest

from bench.wrk import WrkError, command, parse

# wrk 4.1.0 (Debian) against appserver: a clean run, times in ms.
CLEAN = """\
Running 3s test @ http://127.0.0.1:18000/hello
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    18.23ms   16.94ms 266.46ms   97.41%
    Req/Sec     1.94k   360.42     2.77k    73.33%
  Latency Distribution
     50%   16.21ms
     75%   18.29ms
     90%   21.02ms
     99%  105.89ms
  5819 requests in 3.01s, 1.55MB read
Requests/sec:   1933.83
Transfer/sec:    528.78KB
"""

# uWSGI --http-socket closing every connection: read errors, times in us.
SOCKET_ERRORS = """\
Running 1s test @ http://127.0.0.1:18003/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   495.82us  486.90us   6.67ms   95.42%
    Req/Sec     8.10k   462.66     8.77k    81.82%
  Latency Distribution
     50%  406.00us
     75%  539.00us
     90%  716.00us
     99%    3.15ms
  8865 requests in 1.10s, 805.12KB read
  Socket errors: connect 0, read 8865, write 0, timeout 0
Requests/sec:   8061.05
Transfer/sec:    732.11KB"""

# Overloaded: every error kind, 4xx/5xx answers, times in seconds, a minute-long run.
OVERLOAD = """\
Running 1m test @ http://127.0.0.1:8080/hello
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   300.50ms   4.99s    80.00%
    Req/Sec   210.00     40.00   300.00     70.00%
  Latency Distribution
     50%    1.10s
     75%    1.40s
     90%    1.80s
     99%    2.50s
  12000 requests in 1.00m, 3.00MB read
  Socket errors: connect 3, read 4, write 5, timeout 6
  Non-2xx or 3xx responses: 70
Requests/sec:    199.95
Transfer/sec:     51.20KB
"""


def test_clean_run() -> None:
    result = parse(CLEAN)
    assert result.requests == 5819
    assert result.duration_s == pytest.approx(3.01)
    assert result.requests_per_s == pytest.approx(1933.83)
    assert result.latency_avg_ms == pytest.approx(18.23)
    assert result.latency_max_ms == pytest.approx(266.46)
    assert (result.p50_ms, result.p75_ms, result.p90_ms, result.p99_ms) == pytest.approx(
        (16.21, 18.29, 21.02, 105.89)
    )
    assert result.errors == 0


def test_microseconds_and_socket_errors() -> None:
    result = parse(SOCKET_ERRORS)
    assert result.p50_ms == pytest.approx(0.406)
    assert result.p99_ms == pytest.approx(3.15)
    assert result.latency_avg_ms == pytest.approx(0.49582)
    assert result.read_errors == 8865
    assert result.errors == 8865


def test_seconds_minutes_and_every_error_kind() -> None:
    result = parse(OVERLOAD)
    assert result.duration_s == pytest.approx(60.0)
    assert result.p50_ms == pytest.approx(1100.0)
    assert result.p99_ms == pytest.approx(2500.0)
    assert result.latency_max_ms == pytest.approx(4990.0)
    assert (
        result.connect_errors,
        result.read_errors,
        result.write_errors,
        result.timeout_errors,
        result.non_2xx,
    ) == (3, 4, 5, 6, 70)
    assert result.errors == 3 + 4 + 5 + 6 + 70
    assert result.to_json()["errors"] == result.errors


def test_report_without_latency_distribution_is_refused() -> None:
    without = "\n".join(
        line for line in CLEAN.splitlines() if "%" not in line or "Latency " in line
    )
    with pytest.raises(WrkError, match="--latency"):
        parse(without.replace("Latency Distribution", ""))


@pytest.mark.parametrize("text", ["", "unable to connect to 127.0.0.1:1 Connection refused\n"])
def test_not_a_report(text: str) -> None:
    with pytest.raises(WrkError, match="not a wrk report"):
        parse(text)


def test_command_is_one_thread_with_latency() -> None:
    argv = command(
        "http://127.0.0.1:1/x", connections=32, duration_s=3, timeout_s=5, cpus=None, wrk="wrk"
    )
    assert argv == [
        "wrk",
        "-t1",
        "-c32",
        "-d3s",
        "--timeout=5s",
        "--latency",
        "http://127.0.0.1:1/x",
    ]
