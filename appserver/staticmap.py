"""uWSGI's ``static-map /prefix=/dir``: which file a request names, and how to answer it.

Two pure decisions, called by the worker before the app:

* ``StaticMap.lookup(path_info)`` maps a WSGI PATH_INFO to a regular file
  inside one of the mapped directories, or returns None, which means "not
  mine": the request falls through to the application, exactly as uWSGI
  does when the file is missing (``core/protocol.c``, ``core/static.c``).
* ``evaluate(...)`` applies RFC 9110 conditionals and ranges to that file and
  says what to send: status, headers, and which bytes.

Neither sends anything.  ``lookup`` only stats (and resolves) paths; the
worker opens ``StaticFile.path``, ``fstat``s the descriptor and checks
``StaticFile.same_file(st)`` so a file replaced between lookup and open is
never sent with the old file's headers (aiohttp does the same re-check).

Where we differ from uWSGI, on purpose:

* Containment is ``resolve()`` + ``is_relative_to(root)``; uWSGI compares the
  realpath with the docroot as a plain string prefix, so ``/srv/static2``
  passes a check for ``/srv/static``.
* A prefix matches on a segment boundary (``/static`` matches ``/static/a``
  but not ``/staticfoo``); uWSGI would serve ``/dir/foo`` for the latter.
* Maps are tried longest prefix first, then in configuration order; like
  uWSGI, a miss in one matching map tries the next before falling through.
* ETag, If-None-Match and If-Range are supported (uWSGI only does
  If-Modified-Since), and the 416 reason phrase is RFC 9110's.
* No ``static-index``: a directory always falls through to the app.

There is no stat cache: correctness would need a stat per request anyway to
revalidate, and the resolve it could save is the containment check itself.
"""

from __future__ import annotations

import calendar
import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from email.utils import parsedate_tz
from pathlib import Path

from httpproto import http_date

__all__ = ["StaticFile", "StaticMap", "StaticResponse", "evaluate"]

# A private table built only from Python's defaults, so a type never depends on
# the host's /etc/mime.types (uWSGI reads that file; tests could not pin it).
_MIME = mimetypes.MimeTypes()
# Types the stdlib table lacks or gets dated: RFC 9239 made text/javascript the
# one JavaScript type; fonts and images a Django collectstatic tree contains.
_MIME_OVERRIDES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".webp": "image/webp",
    ".md": "text/markdown",
}
# A compressed file is served as what it is, not as what it would inflate to:
# without a Content-Encoding header (which would be a lie about the resource),
# "x.tar.gz" is an application/gzip body.
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
_DEFAULT_TYPE = "application/octet-stream"

# RFC 9110 §14.1.2: a single range-spec; ASCII digits only (``\d`` would let
# int() accept other scripts' digits).
_RANGE_SPEC = re.compile(r"\s*([0-9]*)\s*-\s*([0-9]*)\s*")
# RFC 9110 §8.8.3: entity-tag = [ W/ ] DQUOTE *etagc DQUOTE; a comma is a
# legal etagc, so the list is scanned by tag, not split on commas.
_ENTITY_TAG = re.compile(r'(W/)?("[^"]*")')

_SAFE_METHODS = frozenset({"GET", "HEAD"})


def _content_type(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    mime = _MIME_OVERRIDES.get(suffix)
    if mime is None:
        guessed, encoding = _MIME.guess_type(name, strict=False)
        if encoding is not None:
            mime = _ENCODING_TYPES.get(encoding, _DEFAULT_TYPE)
        else:
            mime = guessed or _DEFAULT_TYPE
    # Browsers otherwise sniff or assume windows-1252 for text without a charset.
    if mime.startswith("text/"):
        return mime + "; charset=utf-8"
    return mime


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A regular file inside a mapped directory, as it was when stat'ed."""

    path: str  # resolved, absolute: open this one
    size: int
    mtime: int  # whole seconds: HTTP dates carry no more
    mtime_ns: int
    device: int
    inode: int
    etag: str  # strong, quoted: '"<mtime_ns hex>-<size hex>"'
    content_type: str
    last_modified: str  # IMF-fixdate

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> StaticFile:
        return cls(
            path=path,
            size=st.st_size,
            mtime=int(st.st_mtime),
            mtime_ns=st.st_mtime_ns,
            device=st.st_dev,
            inode=st.st_ino,
            etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
            content_type=_content_type(path),
            last_modified=http_date(int(st.st_mtime)).decode("ascii"),
        )

    def same_file(self, st: os.stat_result) -> bool:
        """True if ``st`` (the worker's fstat of the opened file) is still this file."""
        return (
            st.st_ino == self.inode
            and st.st_dev == self.device
            and st.st_size == self.size
            and st.st_mtime_ns == self.mtime_ns
            and stat.S_ISREG(st.st_mode)
        )


class StaticMap:
    """The ``static-map`` table: URL prefixes mapped to directories (or single files)."""

    __slots__ = ("_maps",)

    def __init__(self, maps: tuple[tuple[str, str], ...]) -> None:
        entries: list[tuple[str, Path]] = []
        for prefix, directory in maps:
            # "/static/" and "/static" mean the same mount; "/" stays "/".
            normalized = prefix.rstrip("/") or "/"
            # Resolved once, as uWSGI does on first use: a root that is itself a
            # symlink (a common deploy layout) is then the real directory.
            entries.append((normalized, Path(directory).resolve()))
        # Longest prefix first; sorted() is stable, so ties keep config order.
        self._maps = tuple(sorted(entries, key=lambda entry: len(entry[0]), reverse=True))

    @property
    def maps(self) -> tuple[tuple[str, str], ...]:
        return tuple((prefix, str(root)) for prefix, root in self._maps)

    def lookup(self, path_info: str) -> StaticFile | None:
        """The file ``path_info`` names, or None to fall through to the app.

        ``path_info`` is PEP 3333's native string: already percent-decoded,
        each character one byte (latin-1) of what is normally UTF-8.
        """
        for prefix, root in self._maps:
            if prefix == "/":
                rest = path_info
            elif path_info == prefix or path_info.startswith(prefix + "/"):
                rest = path_info[len(prefix) :]
            else:
                continue
            found = _find(root, rest)
            if found is not None:
                return found
        return None


def _find(root: Path, rest: str) -> StaticFile | None:
    # Refuse rather than normalize: NUL truncates paths in C, a backslash is a
    # separator on Windows and a traversal probe everywhere else, and ".."
    # has no business in a static URL (these are already percent-decoded, so
    # "%2e%2e" arrives here as "..").
    if "\x00" in rest or "\\" in rest:
        return None
    segments = [segment for segment in rest.split("/") if segment and segment != "."]
    if ".." in segments:
        return None
    try:
        raw = [segment.encode("latin-1") for segment in segments]
    except UnicodeEncodeError:
        return None  # not a WSGI native string: nothing on disk can match
    # os.fsdecode maps the bytes back to the name the filesystem holds, UTF-8 or not.
    candidate = root.joinpath(*(os.fsdecode(segment) for segment in raw))
    try:
        # strict=True: every component must exist; symlinks are followed, so
        # the containment test below sees where the path really leads.
        resolved = candidate.resolve(strict=True)
        if not resolved.is_relative_to(root):
            return None
        st = resolved.stat()
    except (OSError, RuntimeError, ValueError):
        # OSError: missing, permission, ENOTDIR, ENAMETOOLONG; RuntimeError: a
        # symlink loop on Python < 3.13; ValueError: an embedded NUL.
        return None
    if not stat.S_ISREG(st.st_mode):
        return None  # directories, fifos, devices: never served
    return StaticFile.from_stat(str(resolved), st)


@dataclass(frozen=True, slots=True)
class StaticResponse:
    """What to send for a static file."""

    status: str  # status line text, e.g. "206 Partial Content"
    headers: list[tuple[str, str]]
    byte_range: tuple[int, int] | None  # (offset, length) of the file to send
    send_body: bool  # False for HEAD, 304 and 416

    @property
    def status_code(self) -> int:
        return int(self.status[:3])


def evaluate(
    static_file: StaticFile,
    method: str,
    if_none_match: str | None,
    if_modified_since: str | None,
    range_header: str | None,
    if_range: str | None = None,
) -> StaticResponse | None:
    """Answer ``method`` for ``static_file`` per RFC 9110, or None to fall through.

    None is returned for methods other than GET and HEAD: uWSGI's
    ``uwsgi_file_serve`` skips them and the app gets the request (a POST to
    a static URL is the app's to refuse, with its own 405 and Allow).
    """
    if method not in _SAFE_METHODS:
        return None

    # RFC 9110 §13.2.2 step 3: If-None-Match, when present, decides alone and
    # If-Modified-Since is ignored (step 4 applies only without it).
    if if_none_match is not None:
        if _none_match_fails(if_none_match, static_file.etag):
            return _not_modified(static_file)
    elif if_modified_since is not None:
        since = _parse_http_date(if_modified_since)
        if since is not None and static_file.mtime <= since:
            return _not_modified(static_file)

    head = method == "HEAD"
    size = static_file.size
    headers = [
        ("Content-Type", static_file.content_type),
        ("ETag", static_file.etag),
        ("Last-Modified", static_file.last_modified),
        ("Accept-Ranges", "bytes"),
    ]

    # §14.2: Range is defined for GET only; a server MUST ignore it otherwise.
    # An empty file has no byte to address, so any range gets the whole (empty)
    # representation rather than a 416 a client could not act on.
    if range_header is not None and not head and size > 0:
        if if_range is None or _if_range_matches(if_range, static_file):
            selected = _parse_range(range_header, size)
            if selected is _UNSATISFIABLE:
                headers.append(("Content-Range", f"bytes */{size}"))
                headers.append(("Content-Length", "0"))
                return StaticResponse("416 Range Not Satisfiable", headers, None, False)
            if isinstance(selected, tuple):
                first, last = selected
                length = last - first + 1
                headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
                headers.append(("Content-Length", str(length)))
                return StaticResponse("206 Partial Content", headers, (first, length), True)
            # None: a range we ignore (bad syntax, other unit, several ranges).

    headers.append(("Content-Length", str(size)))
    if head:
        return StaticResponse("200 OK", headers, None, False)
    return StaticResponse("200 OK", headers, (0, size), True)


def _not_modified(static_file: StaticFile) -> StaticResponse:
    # §15.4.5: a 304 repeats the validators that would have been sent with a
    # 200; other representation metadata (type, length) SHOULD NOT be sent.
    return StaticResponse(
        "304 Not Modified",
        [("ETag", static_file.etag), ("Last-Modified", static_file.last_modified)],
        None,
        False,
    )


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def _none_match_fails(header: str, etag: str) -> bool:
    """True if If-None-Match matches ``etag`` (so the answer is 304).

    §13.1.2 uses the weak comparison: ``W/"x"`` matches ``"x"``.
    """
    if header.strip() == "*":
        return True  # the file exists, which is all "*" asks
    target = _opaque(etag)
    return any(match.group(2) == target for match in _ENTITY_TAG.finditer(header))


def _if_range_matches(header: str, static_file: StaticFile) -> bool:
    """§13.1.5: send the range only if the client's copy is this representation."""
    value = header.strip()
    if value.startswith('"') or value.startswith("W/"):
        # Strong comparison: a weak tag never matches.
        return value == static_file.etag
    # A date must be an exact match with Last-Modified.
    since = _parse_http_date(value)
    return since is not None and since == static_file.mtime


def _parse_http_date(value: str) -> int | None:
    """Seconds since the epoch for an HTTP-date (§5.6.7, all three forms), else None."""
    try:
        parsed = parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    # asctime has no zone and means GMT; a numeric zone is tolerated.
    offset = parsed[9] or 0
    try:
        return calendar.timegm(parsed[:6] + (0, 0, 0)) - offset
    except (OverflowError, ValueError):
        return None


class _Unsatisfiable:
    __slots__ = ()


_UNSATISFIABLE = _Unsatisfiable()


def _parse_range(header: str, size: int) -> tuple[int, int] | _Unsatisfiable | None:
    """One byte range as (first, last) inclusive, 416, or None to ignore the header.

    §14.2 lets a server ignore Range; we do so for anything but one
    well-formed ``bytes`` range (several ranges would need multipart/byteranges).
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _RANGE_SPEC.fullmatch(spec)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None  # "bytes=-" is not a range-spec
        suffix = int(last_text)
        if suffix == 0:
            return _UNSATISFIABLE  # §14.1.1: a zero suffix-length is unsatisfiable
        return (max(0, size - suffix), size - 1)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # §14.1.1: invalid, so the whole header is ignored
    if first >= size:
        return _UNSATISFIABLE
    last = int(last_text) if last_text else size - 1
    return (first, min(last, size - 1))
