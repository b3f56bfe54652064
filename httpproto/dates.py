"""Reading HTTP-dates (RFC 9110 §5.6.7): the three forms, all of them GMT.

Writing one is ``httpproto.http_date`` (IMF-fixdate only, as RFC 9110 requires
of senders).  Recipients MUST accept all three forms, so this reads:

* IMF-fixdate ``Sun, 06 Nov 1994 08:49:37 GMT``
* the obsolete RFC 850 form ``Sunday, 06-Nov-94 08:49:37 GMT``
* the obsolete asctime form ``Sun Nov  6 08:49:37 1994``, which carries no zone
  and means GMT (so a date is never ignored just for being written this way)

Month and day names are matched without regard to case and the weekday is not
checked against the date, as nginx's ``ngx_parse_http_time`` does.  A zone
other than ``GMT`` is not an HTTP-date: the value is refused rather than
guessed at, and a refused date is ignored by the conditional rules (RFC 9110
§13.1.3 and §13.1.4 say a recipient MUST ignore an invalid date).  A two-digit
RFC 850 year below 70 is 20xx, else 19xx (nginx's pivot; RFC 9110 asks for
"not more than 50 years in the future", which needs a clock this module has
not got, and agrees with the pivot for every year from 2020 to 2069).
"""

from __future__ import annotations

import calendar
import re
from typing import Final

__all__ = ["parse_http_date"]

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_SHORT_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"

# ASCII digits only: ``\d`` would let other scripts' digits through to int().
_IMF_FIXDATE: Final = re.compile(
    rf"{_SHORT_DAY}, ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} gmt", re.IGNORECASE
)
_RFC850_DATE: Final = re.compile(
    rf"{_LONG_DAY}, ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} gmt", re.IGNORECASE
)
# asctime pads a one-digit day with a space ("Nov  6"); a single space is tolerated.
_ASCTIME_DATE: Final = re.compile(
    rf"{_SHORT_DAY} {_MONTH} {{1,2}}([0-9]{{1,2}}) {_TIME} ([0-9]{{4}})", re.IGNORECASE
)


def parse_http_date(value: str | bytes | None) -> int | None:
    """Seconds since the epoch for an HTTP-date in any of its three forms, else None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip(" \t")
    match = _IMF_FIXDATE.fullmatch(text)
    if match is not None:
        day, month, year, hour, minute, second = match.groups()
        full_year = int(year)
    else:
        match = _RFC850_DATE.fullmatch(text)
        if match is not None:
            day, month, year, hour, minute, second = match.groups()
            short_year = int(year)
            full_year = short_year + (2000 if short_year < 70 else 1900)
        else:
            match = _ASCTIME_DATE.fullmatch(text)
            if match is None:
                return None
            month, day, hour, minute, second, year = match.groups()
            full_year = int(year)
    if full_year < 1:
        return None  # there was no year 0, and the calendar functions refuse it
    month_number = _MONTHS[month.lower()]
    day_number, hours, minutes, seconds = int(day), int(hour), int(minute), int(second)
    if not 1 <= day_number <= calendar.monthrange(full_year, month_number)[1]:
        return None  # "31 Feb" is not a day; timegm would quietly roll it into March
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    return calendar.timegm((full_year, month_number, day_number, hours, minutes, seconds))
