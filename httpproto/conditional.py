"""Conditional requests (RFC 9110 §13): the validators a file has and what they decide.

One set of rules for edge's static files and appserver's ``static-map``:

* The ETag is nginx's ``"<Last-Modified seconds hex>-<size hex>"``
  (``ngx_http_set_etag``), strong.  Both servers give the same file the same
  tag, and a tag changes exactly when Last-Modified or the size does.
* ``evaluate_preconditions`` follows RFC 9110 §13.2.2 steps 1-4 in order:
  If-Match (strong comparison), else If-Unmodified-Since; then If-None-Match
  (weak comparison), else If-Modified-Since for GET and HEAD.
  If-Modified-Since means "modified after" (RFC 9110 §13.1.3): a date equal
  to or later than Last-Modified gives 304.  nginx's default
  ``if_modified_since exact`` wants the same second; that is its choice, not
  the RFC's.
* Entity-tag lists are read by their grammar (``#entity-tag``, where a comma
  is a legal tag character), not split on commas.  ``*`` counts only as the
  whole field value; a field that is not a list of entity-tags matches
  nothing (so If-Match gives 412 and If-None-Match gives the full response).
* If-Range (§13.1.5) holds when its entity-tag equals ours by strong
  comparison, or its date equals Last-Modified to the second.

Header values and the ETag may be ``str`` (WSGI's latin-1 native strings) or
``bytes`` (edge's headers); nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import re
from typing import Final

from httpproto.dates import parse_http_date

__all__ = [
    "NOT_MODIFIED",
    "PRECONDITION_FAILED",
    "entity_tag",
    "entity_tag_bytes",
    "entity_tags",
    "etag_matches",
    "evaluate_preconditions",
    "if_range_holds",
]

NOT_MODIFIED: Final = 304
PRECONDITION_FAILED: Final = 412

# RFC 9110 §8.8.3: entity-tag = [ W/ ] DQUOTE *etagc DQUOTE,
# etagc = %x21 / %x23-7E / obs-text.
_ENTITY_TAG: Final = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')
# List separators (§5.6.1): OWS, commas, and the empty elements a recipient MUST accept.
_SEPARATORS: Final = re.compile(r"[ \t]*(?:,[ \t]*)*")
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})


def entity_tag(last_modified: int, size: int) -> str:
    """nginx's strong ETag for a file: ``"<mtime seconds hex>-<size hex>"``."""
    return f'"{last_modified:x}-{size:x}"'


def entity_tag_bytes(last_modified: int, size: int) -> bytes:
    """``entity_tag`` as header bytes, built directly: edge asks for one per file response."""
    return b'"%x-%x"' % (last_modified, size)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def entity_tags(field: str | bytes) -> list[str] | None:
    """The entity-tags of an If-Match / If-None-Match list, or None if it is not one."""
    text = _text(field)
    end = len(text)
    separator = _SEPARATORS.match(text)
    assert separator is not None  # the pattern matches the empty string
    position = separator.end()
    tags: list[str] = []
    while position < end:
        tag = _ENTITY_TAG.match(text, position)
        if tag is None:
            return None
        tags.append(tag.group())
        separator = _SEPARATORS.match(text, tag.end())
        assert separator is not None
        position = separator.end()
        if position < end and "," not in text[tag.end() : position]:
            return None  # two tags need a comma between them
    return tags


def etag_matches(field: str | bytes, etag: str | bytes, *, weak: bool) -> bool:
    """Does an If-Match / If-None-Match value match ``etag``?

    ``weak`` selects RFC 9110 §8.8.3.2's weak comparison (If-None-Match):
    ``W/"x"`` matches ``"x"``.  The strong one (If-Match) needs both tags
    strong and equal.  ``*`` matches any current representation, and a file
    that is being answered for has one.
    """
    text = _text(field).strip(" \t")
    etag = _text(etag)
    if text == etag:
        return weak or not etag.startswith("W/")  # the usual case: our own tag sent back
    if text == "*":
        return True
    tags = entity_tags(text)
    if not tags:
        return False
    if weak:
        opaque = etag.removeprefix("W/")
        return any(tag.removeprefix("W/") == opaque for tag in tags)
    return not etag.startswith("W/") and etag in tags


def evaluate_preconditions(
    method: str,
    etag: str | bytes,
    last_modified: int,
    *,
    if_match: str | bytes | None = None,
    if_unmodified_since: str | bytes | None = None,
    if_none_match: str | bytes | None = None,
    if_modified_since: str | bytes | None = None,
) -> int | None:
    """RFC 9110 §13.2.2 steps 1-4: 412, 304, or None to go on (ranges, then 200).

    ``last_modified`` is the file's modification time in whole seconds, the
    precision of the Last-Modified header the client compares against.
    """
    if if_match is not None:
        if not etag_matches(if_match, etag, weak=False):
            return PRECONDITION_FAILED
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and last_modified > since:
            return PRECONDITION_FAILED
    safe = method in _SAFE_METHODS
    if if_none_match is not None:
        # Step 3 decides alone: If-Modified-Since is not looked at (§13.1.3).
        if etag_matches(if_none_match, etag, weak=True):
            return NOT_MODIFIED if safe else PRECONDITION_FAILED
        return None
    if safe and if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        if since is not None and last_modified <= since:
            return NOT_MODIFIED
    return None


def if_range_holds(if_range: str | bytes | None, etag: str | bytes, last_modified: int) -> bool:
    """If-Range (§13.1.5): True to honour Range, False to send the whole representation."""
    if if_range is None:
        return True
    text = _text(if_range).strip(" \t")
    # "A valid entity-tag can be distinguished from a valid HTTP-date by examining
    # the first three characters for a DQUOTE."
    if text.startswith(('"', "W/")):
        # Strong comparison: a weak tag never matches, nor does a weak ETag of ours.
        etag = _text(etag)
        return not text.startswith("W/") and not etag.startswith("W/") and text == etag
    since = parse_http_date(text)
    return since is not None and since == last_modified
