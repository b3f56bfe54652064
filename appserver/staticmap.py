"""uWSGI's ``static-map /prefix=/dir``: which file a request names, and how to answer it.

Two pure decisions, called by the worker before the app:

* ``StaticMap.lookup(path_info)`` maps a WSGI PATH_INFO to a regular file
  inside one of the mapped directories, or returns None, which means "not
  mine": the request falls through to the application, exactly as uWSGI
  does when the file is missing (``core/protocol.c``, ``core/static.c``).
* ``evaluate_request(file, environ)`` applies RFC 9110 conditionals and
  ranges to that file and says what to send: status, headers, and which
  bytes.  The rules are ``httpproto``'s (conditional.py, ranges.py), the
  same ones edge's static files follow, so one file gets the same ETag and
  the same answers from both servers.

Neither sends anything.  ``lookup`` only stats (and resolves) paths; the
worker opens ``StaticFile.path``, ``fstat``s the descriptor and checks
``StaticFile.same_file(st)`` so a file replaced between lookup and open is
never sent with the old file's headers (aiohttp does the same re-check).
Then ``send_static_body`` sends the body, one ``sendfile`` per range.

Where we differ from uWSGI, on purpose:

* Containment is ``resolve()`` + ``is_relative_to(root)``; uWSGI compares the
  realpath with the docroot as a plain string prefix, so ``/srv/static2``
  passes a check for ``/srv/static``.
* A prefix matches on a segment boundary (``/static`` matches ``/static/a``
  but not ``/staticfoo``); uWSGI would serve ``/dir/foo`` for the latter.
* Maps are tried longest prefix first, then in configuration order; like
  uWSGI, a miss in one matching map tries the next before falling through.
* ETag (nginx's form), If-Match, If-Unmodified-Since, If-None-Match and
  If-Range are supported (uWSGI only does If-Modified-Since), and so are
  several ranges at once, as multipart/byteranges; the 416 reason phrase is
  RFC 9110's.
* No ``static-index``: a directory always falls through to the app.

There is no stat cache: correctness would need a stat per request anyway to
revalidate, and the resolve it could save is the containment check itself.
"""

from __future__ import annotations

import mimetypes
import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from appserver.response import send_file
from httpproto import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    UNSATISFIABLE,
    MultipartByteranges,
    entity_tag,
    evaluate_preconditions,
    http_date,
    multipart_byteranges,
    new_boundary,
    select_ranges,
    unsatisfied_range,
)

__all__ = [
    "StaticFile",
    "StaticMap",
    "StaticResponse",
    "evaluate",
    "evaluate_request",
    "send_static_body",
]

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
    mtime: int  # whole seconds (floor): HTTP dates carry no more
    mtime_ns: int
    device: int
    inode: int
    etag: str  # strong, nginx's: '"<mtime hex>-<size hex>"'
    content_type: str
    last_modified: str  # IMF-fixdate

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> StaticFile:
        # From the integer nanoseconds: the float st_mtime can round up into the
        # next second, and Last-Modified and the ETag must name the same one.
        mtime = st.st_mtime_ns // 1_000_000_000
        return cls(
            path=path,
            size=st.st_size,
            mtime=mtime,
            mtime_ns=st.st_mtime_ns,
            device=st.st_dev,
            inode=st.st_ino,
            etag=entity_tag(mtime, st.st_size),
            content_type=_content_type(path),
            last_modified=http_date(mtime).decode("ascii"),
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
    byte_range: tuple[int, int] | None  # (offset, length) of the file, for a one-part body
    send_body: bool  # False for HEAD, 304, 412 and 416
    multipart: MultipartByteranges | None = None  # the body for several ranges

    @property
    def status_code(self) -> int:
        return int(self.status[:3])

    @property
    def content_length(self) -> int:
        """The bytes of body the head announces (what ``send_static_body`` sends)."""
        if self.multipart is not None:
            return self.multipart.content_length
        return self.byte_range[1] if self.byte_range is not None else 0


def evaluate_request(static_file: StaticFile, environ: Mapping[str, Any]) -> StaticResponse | None:
    """``evaluate`` with every header it reads taken from a WSGI environ.

    This is the call for the worker: it sees If-Match and If-Unmodified-Since,
    and answers several ranges with multipart/byteranges, which the body must
    then be sent with ``send_static_body``.
    """
    return evaluate(
        static_file,
        environ["REQUEST_METHOD"],
        environ.get("HTTP_IF_NONE_MATCH"),
        environ.get("HTTP_IF_MODIFIED_SINCE"),
        environ.get("HTTP_RANGE"),
        environ.get("HTTP_IF_RANGE"),
        if_match=environ.get("HTTP_IF_MATCH"),
        if_unmodified_since=environ.get("HTTP_IF_UNMODIFIED_SINCE"),
        multipart=True,
    )


def evaluate(
    static_file: StaticFile,
    method: str,
    if_none_match: str | None,
    if_modified_since: str | None,
    range_header: str | None,
    if_range: str | None = None,
    *,
    if_match: str | None = None,
    if_unmodified_since: str | None = None,
    multipart: bool = False,
) -> StaticResponse | None:
    """Answer ``method`` for ``static_file`` per RFC 9110, or None to fall through.

    None is returned for methods other than GET and HEAD: uWSGI's
    ``uwsgi_file_serve`` skips them and the app gets the request (a POST to
    a static URL is the app's to refuse, with its own 405 and Allow).

    The rules are httpproto's, shared with edge.  Without ``multipart``
    several ranges get the whole file (a caller that only knows how to send
    ``byte_range`` keeps working); with it they get a multipart/byteranges body.
    """
    if method not in _SAFE_METHODS:
        return None
    etag = static_file.etag
    verdict = evaluate_preconditions(
        method,
        etag,
        static_file.mtime,
        if_match=if_match,
        if_unmodified_since=if_unmodified_since,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
    )
    if verdict == NOT_MODIFIED:
        return _not_modified(static_file)
    validators = [("ETag", etag), ("Last-Modified", static_file.last_modified)]
    if verdict == PRECONDITION_FAILED:
        return StaticResponse(
            "412 Precondition Failed", [*validators, ("Content-Length", "0")], None, False
        )

    size = static_file.size
    headers = [
        ("Content-Type", static_file.content_type),
        *validators,
        ("Accept-Ranges", "bytes"),
    ]
    selected = select_ranges(method, range_header, if_range, etag, static_file.mtime, size)
    if selected is UNSATISFIABLE:
        headers.append(("Content-Range", unsatisfied_range(size)))
        headers.append(("Content-Length", "0"))
        return StaticResponse("416 Range Not Satisfiable", headers, None, False)
    if isinstance(selected, tuple):
        if len(selected) == 1:
            (only,) = selected
            headers.append(("Content-Range", only.content_range(size)))
            headers.append(("Content-Length", str(only.length)))
            return StaticResponse("206 Partial Content", headers, (only.first, only.length), True)
        if multipart:
            body = multipart_byteranges(selected, size, static_file.content_type, new_boundary())
            headers[0] = ("Content-Type", body.content_type)
            headers.append(("Content-Length", str(body.content_length)))
            return StaticResponse("206 Partial Content", headers, None, True, body)

    headers.append(("Content-Length", str(size)))
    if method == "HEAD":
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


def send_static_body(
    sock: socket.socket, file: BinaryIO, answer: StaticResponse, timeout: float
) -> int:
    """Send the body of ``answer`` from the open ``file``; the bytes sent.

    Each range goes out with ``sendfile`` (zero-copy), and each multipart part
    head with ``sendall``.  ``timeout`` bounds each wait for the client, as
    ``send_file`` does.  A client that leaves raises the socket's OSError.
    Fewer bytes than ``answer.content_length`` means the file shrank while it
    was sent: the connection cannot be reused.
    """
    if not answer.send_body:
        return 0
    if sock.gettimeout() is None:
        sock.settimeout(timeout)
    if answer.multipart is None:
        if answer.byte_range is None or not answer.byte_range[1]:
            return 0
        offset, length = answer.byte_range
        return send_file(sock, file, offset, length, timeout)
    sent = 0
    for segment in answer.multipart.segments():
        if isinstance(segment, bytes):
            sock.sendall(segment)
            sent += len(segment)
        else:
            got = send_file(sock, file, segment.first, segment.length, timeout)
            sent += got
            if got < segment.length:
                break  # the file shrank: what followed would be framed wrongly
    return sent
