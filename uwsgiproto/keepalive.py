"""The names of the ``WSGISTACK_KEEPALIVE`` extension (docs/uwsgi-keepalive.md), for both ends.

The client (edge) offers with one var in the packet; the server (appserver)
accepts with one header in a framed HTTP/1.1 response.  Only the spelling and
the parsing of these two live here; what each end does with them is its own.
"""

from __future__ import annotations

from typing import Final

OFFER_VAR: Final = "WSGISTACK_KEEPALIVE"
OFFER_VERSION: Final = "1"  # the value of OFFER_VAR: the extension's version
ANSWER_HEADER: Final = "Wsgistack-Keepalive"


def answer_line(timeout: int) -> str:
    """The header line (CRLF included) that accepts an offer, with ``timeout`` idle seconds."""
    return f"{ANSWER_HEADER}: timeout={timeout}\r\n"


def parse_answer(value: str | bytes) -> int | None:
    """The idle timeout of a ``Wsgistack-Keepalive`` value (``"timeout=5"`` -> 5), or None.

    None means the value is not one this version understands, which a client must
    treat as a declined offer (no reuse).
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    name, sep, number = value.strip().partition("=")
    if sep and name.strip().lower() == "timeout":
        number = number.strip()
        if number.isascii() and number.isdigit():
            return int(number)
    return None
