"""httpproto.parse_http_date: RFC 9110 §5.6.7's three forms, all read as GMT."""

from __future__ import annotations

import calendar
import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpproto import http_date, parse_http_date

# RFC 9110 §5.6.7's own example, in its three forms.
EXAMPLE = calendar.timegm((1994, 11, 6, 8, 49, 37))


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime: no zone, and it means GMT
        "Sun Nov 6 08:49:37 1994",  # asctime with the pad space missing
        b"Sun, 06 Nov 1994 08:49:37 GMT",  # edge passes header bytes
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",  # OWS around a field value
        "sun, 06 nov 1994 08:49:37 gmt",  # names in any case, as nginx reads them
        "Mon, 06 Nov 1994 08:49:37 GMT",  # a wrong weekday is not checked (nginx neither)
    ],
)
def test_the_three_forms_are_the_same_instant(value: str | bytes) -> None:
    assert parse_http_date(value) == EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37",  # IMF-fixdate without its zone
        "Sun, 06 Nov 1994 08:49:37 +0100",  # not GMT: refused, never guessed at
        "Sun, 06 Nov 1994 08:49:37 PST",
        "Sun Nov  6 08:49:37 1994 GMT",  # asctime carries no zone
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day (timegm would roll it into March)
        "Sun, 29 Feb 1900 08:49:37 GMT",  # 1900 was not a leap year
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:60 GMT",  # nginx refuses a leap second too
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",  # there was no year 0
        "Sun, 06 Xyz 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # IMF-fixdate's day has two digits
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",  # non-ASCII digits
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  # two members
        "1994-11-06T08:49:37Z",
    ],
)
def test_anything_else_is_not_a_date(value: str | None) -> None:
    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    ("year", "full"),
    [("00", 2000), ("69", 2069), ("70", 1970), ("99", 1999)],
)
def test_rfc850_two_digit_years_pivot_at_70_like_nginx(year: str, full: int) -> None:
    assert parse_http_date(f"Saturday, 01-Jan-{year} 00:00:00 GMT") == calendar.timegm(
        (full, 1, 1, 0, 0, 0)
    )


def test_leap_day_and_dates_before_1970() -> None:
    assert parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT") == calendar.timegm(
        (2024, 2, 29, 12, 0, 0)
    )
    assert parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT") == 0
    assert parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT") == -1


@given(st.integers(min_value=-(10**9), max_value=253402300799))  # up to 9999-12-31
def test_what_http_date_writes_reads_back(timestamp: int) -> None:
    assert parse_http_date(http_date(timestamp)) == timestamp


@given(st.integers(min_value=0, max_value=2**31))
def test_asctime_and_rfc850_agree_with_imf_fixdate(timestamp: int) -> None:
    t = time.gmtime(timestamp)
    asctime = time.strftime("%a %b %e %H:%M:%S %Y", t)  # C asctime: space-padded day
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t)
    assert parse_http_date(asctime) == timestamp
    if 1970 <= t.tm_year <= 2069:  # what two digits can name under the pivot
        assert parse_http_date(rfc850) == timestamp
    assert parse_http_date(email.utils.formatdate(timestamp, usegmt=True)) == timestamp


@given(st.text(max_size=40) | st.binary(max_size=40))
def test_arbitrary_input_is_a_date_or_none(value: str | bytes) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, int)
