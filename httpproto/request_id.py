"""Request IDs: the one rule edge and appserver share for X-Request-ID.

An ID taken from a client or a proxy must be 1 to 128 visible ASCII characters
(0x21-0x7e), so that no space, control character or non-ASCII byte can reach a
log line through it.  A new ID is 32 lowercase hex digits (128 random bits).

``RequestIdSource`` cuts new IDs from one ``os.urandom`` call at a time.  It has
no lock: give each thread its own, and make it after fork (or call ``forget``
in the child), so that two processes never hand out the same batch.
"""

from __future__ import annotations

import os

REQUEST_ID_MAX = 128
_VISIBLE = bytes(range(0x21, 0x7F))
_BATCH = 2048  # random bytes per os.urandom call: 128 IDs


def sane_request_id(value: str | bytes | None) -> bool:
    """1 to 128 visible ASCII characters."""
    if value is None or not 0 < len(value) <= REQUEST_ID_MAX or not value.isascii():
        return False
    if isinstance(value, bytes):
        return not value.translate(None, _VISIBLE)
    # For ASCII text isprintable() means 0x20-0x7e; the space is the one to refuse.
    return value.isprintable() and " " not in value


class RequestIdSource:
    """New request IDs, 32 lowercase hex digits each."""

    __slots__ = ("_batch",)

    def __init__(self) -> None:
        self._batch: list[str] = []

    def forget(self) -> None:
        """Drop the batch (a forked child must not reuse its parent's IDs)."""
        self._batch = []

    def new(self) -> str:
        try:
            return self._batch.pop()
        except IndexError:
            digits = os.urandom(_BATCH).hex()
            self._batch = [digits[at : at + 32] for at in range(0, len(digits), 32)]
            return self._batch.pop()
