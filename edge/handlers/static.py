"""Static files, nginx-style: root/alias, index, try_files, conditionals, ranges, gzip_static.

Theory of operation
-------------------
The URI reaching us is already normalized (``edge.routing.normalize_uri``:
escapes decoded, dot segments resolved, NUL and climbs above ``/`` refused
with 400).  ``root`` appends it to the directory; ``alias`` replaces the
location's prefix with the directory (nginx).  Whatever the mapping gives,
a file is only served when the normalized path lies under the root/alias
directory, *and*, unless ``allow_symlinks_outside``, when its real path
(symlinks resolved) does too: ``/static../etc/passwd`` under an off-by-slash
alias and a symlink to ``/etc`` both end in 404, never in a file outside.

Where the file-system calls run was decided by measurement.  The lookup
runs on the event loop, as nginx's does without ``aio``: one call opens
(``O_NONBLOCK``, so a FIFO cannot hang us), checks where the descriptor
really points (``/proc/self/fd``), ``fstat``s it (so the size and ETag
describe the file we send, not one replaced since a ``stat``) and, for a
small file, reads it.  On this machine open + fstat + close cost 6 us of CPU
and a 1 KB read 1.5 us, where a trip through the thread pool costs 80-100 us.
What must not happen on the loop is a read that waits for a disk (a cold
64 KB file took 274 us here; a slow disk takes milliseconds and would stall
every connection of the worker): a small file is read with
``preadv2(RWF_NOWAIT)``, which answers from the page cache or fails at once,
and only then is the read done in the thread pool (``read_cached``,
``read_part``).  Larger files go out through ``ResponseSink.sendfile``
(zero-copy), as nginx sends them without ``aio threads``.  With
``open_file_cache``, lookups (descriptors, and misses if ``errors``) are
kept, bounded by ``max``, dropped when unused for ``inactive``, looked up
again after ``valid`` seconds, and ``stat``ed at most once a second so that
a changed file is noticed; a small file served whole is kept in memory with
its header lines and answered without a task (``respond_now``).
Descriptors are reference-counted so that evicting an entry never closes a
file mid-send.

The HTTP decisions are pure functions, tested without files or sockets:
ETag, conditionals (RFC 9110 §13.2.2) and ranges (§14, several as
multipart/byteranges) are ``httpproto``'s, shared with appserver's
static-map; ``expires`` and the types are below.
"""

from __future__ import annotations

import asyncio
import errno
import math
import mimetypes
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from edge.config.schema import Expires, Location, OpenFileCache, StaticHandler
from edge.exchange import ClientError, EdgeError, Exchange, Request, ResponseSink
from edge.handlers import FastAnswer, InternalRedirect, special_response_body
from edge.variables import Template, compile_template, expand
from httpproto import (
    UNSATISFIABLE,
    MultipartByteranges,
    RequestHead,
    entity_tag_bytes,
    evaluate_preconditions,
    http_date,
    multipart_byteranges,
    new_boundary,
    select_ranges,
    unsatisfied_range,
)

SMALL_FILE = 64 * 1024  # read by the lookup (from the page cache) and sent from memory
MAX_EXPIRES: Final = b"Thu, 31 Dec 2037 23:55:55 GMT"
MAX_AGE_MAX: Final = 315360000
EPOCH_EXPIRES: Final = b"Thu, 01 Jan 1970 00:00:01 GMT"
DEFAULT_TYPE: Final = "application/octet-stream"  # nginx default_type

# A subset of nginx's conf/mime.types, so a type does not depend on the host's
# /etc/mime.types; other extensions fall back to Python's table.
MIME_TYPES: Final[dict[str, str]] = {
    "html": "text/html",
    "htm": "text/html",
    "shtml": "text/html",
    "css": "text/css",
    "xml": "text/xml",
    "gif": "image/gif",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "js": "application/javascript",
    "mjs": "application/javascript",
    "atom": "application/atom+xml",
    "rss": "application/rss+xml",
    "txt": "text/plain",
    "png": "image/png",
    "svg": "image/svg+xml",
    "svgz": "image/svg+xml",
    "webp": "image/webp",
    "avif": "image/avif",
    "ico": "image/x-icon",
    "bmp": "image/x-ms-bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "eot": "application/vnd.ms-fontobject",
    "json": "application/json",
    "map": "application/json",
    "webmanifest": "application/manifest+json",
    "wasm": "application/wasm",
    "pdf": "application/pdf",
    "zip": "application/zip",
    "gz": "application/gzip",
    "tar": "application/x-tar",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "m4a": "audio/x-m4a",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mpeg": "video/mpeg",
    "mpg": "video/mpeg",
    "mov": "video/quicktime",
    "csv": "text/csv",
    "md": "text/markdown",
    "yaml": "application/yaml",
    "yml": "application/yaml",
}


# --- pure decisions ------------------------------------------------------------------


def content_type(name: str) -> bytes:
    """Content-Type for a file name, from its extension (nginx's ``types``)."""
    _base, dot, extension = name.rpartition(".")
    if not dot or "/" in extension:
        return DEFAULT_TYPE.encode()
    found = MIME_TYPES.get(extension.lower())
    if found is None:
        found = mimetypes.types_map.get("." + extension.lower(), DEFAULT_TYPE)
    return found.encode("ascii")


def etag_for(mtime: float, size: int) -> bytes:
    """nginx's ETag, ``"<mtime hex>-<size hex>"`` (``httpproto.entity_tag``), as header bytes."""
    return entity_tag_bytes(math.floor(mtime), size)


def evaluate_conditions(
    method: str, header: Callable[[bytes], bytes | None], etag: bytes, last_modified: int
) -> int | None:
    """RFC 9110 §13.2.2 over edge's headers: 412, 304, or None (``httpproto``'s rules)."""
    if_match = header(b"if-match")
    if_unmodified_since = header(b"if-unmodified-since")
    if_none_match = header(b"if-none-match")
    if_modified_since = header(b"if-modified-since")
    if (
        if_match is None
        and if_unmodified_since is None
        and if_none_match is None
        and if_modified_since is None
    ):
        return None  # most requests: no call into the rules at all
    return evaluate_preconditions(
        method,
        etag,
        last_modified,
        if_match=if_match,
        if_unmodified_since=if_unmodified_since,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
    )


def expires_headers(expires: Expires, now: float) -> list[tuple[bytes, bytes]]:
    """nginx ``expires``: Expires plus Cache-Control (``ngx_http_headers_filter_module``)."""
    if expires.kind == "max":
        return [(b"Expires", MAX_EXPIRES), (b"Cache-Control", b"max-age=%d" % MAX_AGE_MAX)]
    if expires.kind == "epoch":
        return [(b"Expires", EPOCH_EXPIRES), (b"Cache-Control", b"no-cache")]
    seconds = expires.seconds
    control = b"no-cache" if seconds < 0 else b"max-age=%d" % seconds
    return [(b"Expires", http_date(now + seconds)), (b"Cache-Control", control)]


def accepts_gzip(value: bytes | None) -> bool:
    """Accept-Encoding lists gzip (or ``*``) with a non-zero q."""
    if not value:
        return False
    for item in value.lower().split(b","):
        coding, _sep, params = item.strip().partition(b";")
        if coding.strip() not in (b"gzip", b"*"):
            continue
        q = params.strip()
        if q.startswith(b"q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def inside(path: str, base: str) -> bool:
    """``path`` is ``base`` or below it (both normalized, absolute)."""
    return path == base or path.startswith(base if base.endswith("/") else base + "/")


# --- file lookups (on the loop; see the module docstring) --------------------------------

FILE, DIRECTORY, MISSING, FORBIDDEN, ESCAPED = range(5)


class OpenedFile:
    """An open descriptor shared by the requests sending it; closed when the last lets go.

    A small file read whole has ``data`` and no descriptor (``fd`` -1), unless its
    pages were not in memory: then the descriptor stays open and ``data`` is None,
    so that the read happens off the event loop (``StaticFiles._read``).
    """

    __slots__ = ("path", "fd", "size", "mtime", "data", "refs", "cached", "identity")

    def __init__(self, path: str, fd: int, size: int, mtime: float, data: bytes | None) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.mtime = mtime  # whole seconds (Last-Modified, ETag)
        self.data = data  # the whole content of a small file
        self.refs = 1
        self.cached = False
        # (st_dev, st_ino, st_size, st_mtime_ns): what a later stat must find for the
        # hot-file cache to keep serving it.
        self.identity: tuple[int, int, int, int] = (0, 0, size, 0)

    def acquire(self) -> OpenedFile:
        self.refs += 1
        return self

    def release(self) -> None:
        self.refs -= 1
        self._maybe_close()

    def uncache(self) -> None:
        self.cached = False
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.refs <= 0 and not self.cached and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(slots=True)
class Lookup:
    kind: int
    path: str
    file: OpenedFile | None = None
    reason: str = ""  # for the error log: "2: No such file or directory"


def read_cached(fd: int, size: int, offset: int = 0) -> bytes | None:
    """A small file's bytes if they are in the page cache, else None (the read would block).

    ``preadv2(RWF_NOWAIT)`` answers from memory or fails with EAGAIN at once: a
    cold file on a slow disk must not stall every connection of the worker, so
    only a cold read goes to the thread pool.  Kernels or file systems without
    RWF_NOWAIT get a plain read on the loop, as nginx reads without aio.
    """
    if size == 0:
        return b""
    if _RWF_NOWAIT:
        buffer = bytearray(size)
        try:
            got = os.preadv(fd, [buffer], offset, _RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        else:
            if got == size:
                return bytes(buffer)
            return None  # part of it is not in memory (or the file shrank): read it off the loop
    return os.pread(fd, size, offset)


async def read_part(fd: int, offset: int, count: int) -> bytes:
    """``count`` bytes at ``offset``: from the page cache on the loop, else in the thread pool."""
    data = read_cached(fd, count, offset)
    if data is None:
        data = await asyncio.get_running_loop().run_in_executor(None, os.pread, fd, count, offset)
    return data


_RWF_NOWAIT: Final = getattr(os, "RWF_NOWAIT", 0)
_PROC_FD = "/proc/self/fd/"
_HAVE_PROC_FD = os.path.isdir(_PROC_FD)


def _real_path(fd: int, path: str) -> str:
    """Where the open descriptor really is.  On Linux one readlink of /proc/self/fd
    names the very file we opened (no window for a symlink swap, and far cheaper than
    ``os.path.realpath``, which lstat()s every component in Python)."""
    if _HAVE_PROC_FD:
        try:
            return os.readlink(f"{_PROC_FD}{fd}")
        except OSError:
            pass
    return os.path.realpath(path)


# How long a file found inside the root is trusted without asking /proc again: the
# readlink costs more than the open, and most requests are for the same few files.
CONTAINED_FOR = 1.0
CONTAINED_KEPT = 1024

Contained = dict[str, tuple[int, int, float]]  # path -> (st_dev, st_ino, checked at)


def _seen_inside(contained: Contained | None, path: str, info: os.stat_result) -> bool:
    """This path led to this very file (device and inode) inside the root a moment ago.

    A symlink swapped in since can only lead to the same file, which was inside.
    """
    if contained is None:
        return False
    seen = contained.get(path)
    return (
        seen is not None
        and seen[0] == info.st_dev
        and seen[1] == info.st_ino
        and time.monotonic() - seen[2] < CONTAINED_FOR
    )


def _remember_inside(contained: Contained | None, path: str, info: os.stat_result) -> None:
    if contained is None:
        return
    if len(contained) >= CONTAINED_KEPT:
        contained.clear()
    contained[path] = (info.st_dev, info.st_ino, time.monotonic())


def lookup(
    path: str,
    base: str,
    real_base: str,
    follow_outside: bool,
    keep_fd: bool,
    contained: Contained | None = None,
) -> Lookup:
    """Contain, open, fstat, check where the descriptor really is; read small files.  Blocking."""
    normalized = os.path.normpath(path)
    if not inside(normalized, base):
        return Lookup(ESCAPED, path, reason="the path leaves the root")
    try:
        fd = os.open(normalized, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        kind = FORBIDDEN if exc.errno in (errno.EACCES, errno.EPERM) else MISSING
        return Lookup(kind, path, reason=f"{exc.errno}: {exc.strerror}")
    try:
        info = os.fstat(fd)
        if not follow_outside and not _seen_inside(contained, normalized, info):
            real = _real_path(fd, normalized)
            if not inside(real, real_base):
                os.close(fd)
                return Lookup(ESCAPED, path, reason=f"a symlink leads outside the root to {real!r}")
            _remember_inside(contained, normalized, info)
        if stat.S_ISDIR(info.st_mode):
            os.close(fd)
            return Lookup(DIRECTORY, path)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return Lookup(MISSING, path, reason="not a regular file")
        data = None
        size = info.st_size
        if size <= SMALL_FILE and not keep_fd:
            data = read_cached(fd, size)
            if data is not None:
                size = len(data)
                os.close(fd)
                fd = -1
        opened = OpenedFile(path, fd, size, info.st_mtime_ns // 1_000_000_000, data)
        opened.identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        return Lookup(FILE, path, opened)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        return Lookup(FORBIDDEN, path, reason=f"{exc.errno}: {exc.strerror}")


REVALIDATE_AFTER = 1.0  # seconds: a cached file is stat()ed at most this often
HOT_FILE_MAX = SMALL_FILE  # larger files are never held in memory: sendfile sends them
HOT_BYTES_MAX = 16 * 1024 * 1024  # per location: the bodies held in memory, at most


class CacheEntry:
    """One ``open_file_cache`` entry: a lookup, and for a small file its body and head."""

    __slots__ = ("found", "looked_up", "used", "checked", "body", "fields", "fields_second")

    def __init__(self, found: Lookup, now: float) -> None:
        self.found = found
        self.looked_up = now  # monotonic: the full lookup
        self.used = now
        self.checked = now  # monotonic: the last stat that found the file unchanged
        self.body: bytes | None = None  # a small file's content, once it was served whole
        self.fields = b""  # its 200 header lines (Content-Type .. Content-Length)
        self.fields_second = -1  # the wall-clock second ``fields`` were built for (expires)


class FileCache:
    """nginx ``open_file_cache``: bounded, ``inactive`` expiry, ``valid`` revalidation.

    One more rule than nginx: a cached file is ``stat``ed at most every
    ``REVALIDATE_AFTER`` seconds, and a different device, inode, size or mtime
    drops the entry, so the next request takes the full lookup again (which
    re-checks where the path leads).  A change shows within a second, where
    nginx waits for ``open_file_cache_valid`` (60 s by default).  That makes it
    safe to keep small files in memory: an entry whose file was served whole
    holds its body and 200 header lines, which ``StaticFiles.respond_now``
    answers without touching the disk; the bodies held stay under
    ``HOT_BYTES_MAX`` per location.
    """

    __slots__ = ("settings", "_entries", "_uses", "_held")

    def __init__(self, settings: OpenFileCache) -> None:
        self.settings = settings
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._uses: OrderedDict[str, int] = OrderedDict()  # toward min_uses
        self._held = 0  # bytes of bodies held

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, path: str, now: float) -> CacheEntry | None:
        """The live entry for ``path`` (expired or changed ones are dropped), or None."""
        entry = self._entries.get(path)
        if entry is None:
            return None
        settings = self.settings
        if now - entry.looked_up >= settings.valid or now - entry.used >= settings.inactive:
            self._drop(path)
            return None
        file = entry.found.file
        if file is not None and now - entry.checked >= REVALIDATE_AFTER:
            try:
                info = os.stat(path)
            except OSError:
                self._drop(path)
                return None
            if (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) != file.identity:
                self._drop(path)
                return None
            entry.checked = now
        entry.used = now
        self._entries.move_to_end(path)
        return entry

    def get(self, path: str, now: float) -> Lookup | None:
        """The cached lookup for ``path``; its file (if any) is acquired for the caller."""
        entry = self.entry(path, now)
        if entry is None:
            return None
        found = entry.found
        if found.file is not None:
            found.file.acquire()
        return found

    def put(self, path: str, found: Lookup, now: float) -> None:
        if found.kind in (MISSING, FORBIDDEN, ESCAPED) and not self.settings.errors:
            return
        if self.settings.min_uses > 1:
            uses = self._uses.pop(path, 0) + 1
            if uses < self.settings.min_uses:
                self._uses[path] = uses
                while len(self._uses) > self.settings.max:
                    self._uses.popitem(last=False)
                return
        self._drop(path)
        if found.file is not None:
            found.file.cached = True
        self._entries[path] = CacheEntry(found, now)
        while len(self._entries) > self.settings.max:
            self._drop(next(iter(self._entries)))

    def hold(self, path: str, file: OpenedFile, body: bytes, fields: bytes, second: int) -> None:
        """Keep ``body`` (all of ``file``) in memory with its header lines, if room allows."""
        entry = self._entries.get(path)
        if (
            entry is None
            or entry.found.file is not file
            or entry.body is not None
            or len(body) != file.size
            or file.size > HOT_FILE_MAX
            or self._held + file.size > HOT_BYTES_MAX
        ):
            return
        entry.body = body
        entry.fields = fields
        entry.fields_second = second
        self._held += len(body)

    def _drop(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is None:
            return
        if entry.body is not None:
            self._held -= len(entry.body)
        if entry.found.file is not None:
            entry.found.file.uncache()

    def close(self) -> None:
        for path in list(self._entries):
            self._drop(path)


# RFC 9110 §15.5.6: a 405 says which methods the resource does allow.
_ALLOW: Final = ((b"Allow", b"GET, HEAD"),)

# Request fields that make a static answer depend on more than the path: the
# conditional and range rules (and gzip_static's choice) are handle()'s.
_NOT_PLAIN = frozenset(
    (b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"range")
)


def _join_fields(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


# --- the handler ---------------------------------------------------------------------


class StaticFiles:
    # The front discards a request body before calling us (nginx's static module does).
    reads_body = False

    def __init__(self, location: Location, settings: StaticHandler) -> None:
        self.location = location
        self.settings = settings
        base = settings.base_dir
        self.base = os.path.normpath(base) if base else "/"
        self.real_base = os.path.realpath(self.base)
        self.cache = FileCache(settings.open_file_cache) if settings.open_file_cache else None
        self.contained: Contained = {}
        # respond_now answers only what handle() would answer with a plain 200.
        self._plain = not settings.try_files and not settings.gzip_static
        # try_files entries, the trailing "/" (test for a directory) taken off first.
        self._try: tuple[tuple[Template, bool], ...] = tuple(
            (compile_template(entry[:-1] if entry.endswith("/") else entry), entry.endswith("/"))
            for entry in settings.try_files[:-1]
        )
        fallback = settings.try_files[-1] if settings.try_files else ""
        self._fallback: Template | None = (
            None if fallback[:1] in ("=", "@") or not fallback else compile_template(fallback)
        )

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    # -- answered at once ------------------------------------------------------------

    def respond_now(self, head: RequestHead, uri: str) -> FastAnswer | None:
        """A plain GET or HEAD of a small file, from memory or the page cache (no waiting).

        Declines (None) whatever ``handle`` would answer otherwise than with the
        whole file: conditionals, ranges, other methods, directories, misses,
        try_files and gzip_static, large files, a file whose pages are not in memory.
        """
        method = head.method
        if (method != "GET" and method != "HEAD") or not self._plain or uri[-1:] == "/":
            return None
        for name, _value in head.headers:
            if name in _NOT_PLAIN:
                return None
        path = self.file_path(uri)
        cache = self.cache
        if cache is not None:
            entry = cache.entry(path, time.monotonic())
            body = None if entry is None else entry.body
            if body is None:
                return None  # the full lookup comes first; a file served whole is then held
            assert entry is not None and entry.found.file is not None
            fields = entry.fields
            if self.settings.expires is not None:
                second = int(time.time())
                if second != entry.fields_second:
                    entry.fields = fields = _join_fields(
                        self._ok_headers(entry.found.file.mtime, len(body), uri, second)
                    )
                    entry.fields_second = second
            return 200, fields, body
        found = lookup(
            path,
            self.base,
            self.real_base,
            self.settings.allow_symlinks_outside,
            False,
            self.contained,
        )
        file = found.file
        if file is None or file.data is None:
            _release(found)
            return None
        return (
            200,
            _join_fields(self._ok_headers(file.mtime, file.size, uri, time.time())),
            file.data,
        )

    # -- mapping ---------------------------------------------------------------------

    def file_path(self, uri: str) -> str:
        """nginx's mapping: root + URI, or alias + the URI after the location's prefix."""
        settings, location = self.settings, self.location
        if settings.alias is not None:
            if location.match in ("prefix", "prefix_no_regex") and uri.startswith(location.path):
                return settings.alias + uri[len(location.path) :]
            return settings.alias
        return (settings.root or "").rstrip("/") + uri

    def _validators(self, last_modified: int, etag: bytes, now: float) -> list[tuple[bytes, bytes]]:
        """Last-Modified, ETag, and what ``gzip_static`` and ``expires`` add (200 and 304 alike)."""
        settings = self.settings
        validators = [(b"Last-Modified", http_date(last_modified)), (b"ETag", etag)]
        if settings.gzip_static:
            validators.append((b"Vary", b"Accept-Encoding"))
        if settings.expires is not None:
            validators.extend(expires_headers(settings.expires, now))
        return validators

    def _ok_headers(
        self, mtime: float, size: int, uri: str, now: float
    ) -> list[tuple[bytes, bytes]]:
        """The fields of a 200 with the whole (uncompressed) file, as ``_send_file`` sends them."""
        last_modified = math.floor(mtime)
        return [
            (b"Content-Type", content_type(uri)),
            *self._validators(last_modified, entity_tag_bytes(last_modified, size), now),
            (b"Accept-Ranges", b"bytes"),
            (b"Content-Length", b"%d" % size),
        ]

    async def _lookup(self, path: str) -> Lookup:
        cache = self.cache
        now = time.monotonic()
        if cache is not None:
            found = cache.get(path, now)
            if found is not None:
                return found
        # On the loop, as nginx does without aio (the module docstring has the figures).
        found = lookup(
            path,
            self.base,
            self.real_base,
            self.settings.allow_symlinks_outside,
            cache is not None,
            self.contained,
        )
        if cache is not None:
            cache.put(path, found, now)
        return found

    async def _find(self, path: str, request: Request) -> tuple[Lookup, bool]:
        """The file for ``path``, preferring ``path.gz`` when gzip_static applies."""
        if self.settings.gzip_static and accepts_gzip(request.header(b"accept-encoding")):
            compressed = await self._lookup(path + ".gz")
            if compressed.kind == FILE:
                return compressed, True
            _release(compressed)
        return await self._lookup(path), False

    # -- requests --------------------------------------------------------------------

    async def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        if request.method not in ("GET", "HEAD"):
            raise EdgeError(
                f"method {request.method} is not allowed on static files",
                status=405,
                level="info",
                headers=_ALLOW,
            )
        if self.settings.try_files:
            await self._try_files(exchange)
            return
        uri = request.path
        path = self.file_path(uri)
        if uri.endswith("/"):
            await self._directory(exchange, path, uri)
            return
        found, gzipped = await self._find(path, request)
        if found.kind == FILE:
            await self._send(exchange, found, uri, gzipped)
        elif found.kind == DIRECTORY:
            await self._redirect_to_directory(exchange, uri)
        else:
            self._refuse(found)

    async def _try_files(self, exchange: Exchange) -> None:
        request = exchange.request
        entries = self.settings.try_files
        for template, want_directory in self._try:
            # nginx: an entry written with a trailing slash tests for a directory.
            uri = expand(template, request).decode("utf-8", "surrogateescape")
            if not uri.startswith("/"):
                uri = "/" + uri
            path = self.file_path(uri)
            if want_directory:
                found = await self._lookup(path)
                if found.kind == DIRECTORY:
                    await self._directory(exchange, path, uri.rstrip("/") + "/")
                    return
                _release(found)
                continue
            found, gzipped = await self._find(path, request)
            if found.kind == FILE:
                await self._send(exchange, found, uri, gzipped)
                return
            _release(found)
        fallback = entries[-1]
        if fallback.startswith("="):
            status = int(fallback[1:])
            raise EdgeError(f"try_files fell back to {fallback}", status=status, level="info")
        if fallback.startswith("@"):
            raise InternalRedirect(fallback)
        assert self._fallback is not None
        raise InternalRedirect(expand(self._fallback, request).decode("utf-8", "surrogateescape"))

    async def _directory(self, exchange: Exchange, path: str, uri: str) -> None:
        """A URI ending in "/": the first index file, else 403 (autoindex is off) or 404."""
        directory = path.rstrip("/")
        for name in self.settings.index:
            found, gzipped = await self._find(f"{directory}/{name}", exchange.request)
            if found.kind == FILE:
                await self._send(exchange, found, uri + name, gzipped)
                return
            _release(found)
        found = await self._lookup(directory or "/")
        if found.kind == DIRECTORY:
            raise EdgeError(f'directory index of "{directory}/" is forbidden', status=403)
        self._refuse(found)

    async def _redirect_to_directory(self, exchange: Exchange, uri: str) -> None:
        """nginx answers a directory requested without its slash with a 301 to it."""
        request, response = exchange.request, exchange.response
        target = quote(uri.encode("utf-8", "surrogateescape") + b"/", safe="/:@!$&'()*+,;=-._~")
        if request.query:
            target += "?" + request.query.decode("latin-1")
        body = special_response_body(301, "Moved Permanently")
        await response.send_head(
            301,
            [
                (b"Content-Type", b"text/html"),
                (b"Content-Length", str(len(body)).encode()),
                (b"Location", target.encode("latin-1")),
            ],
        )
        await response.send(body)
        await response.end()

    def _refuse(self, found: Lookup) -> None:
        if found.kind == FORBIDDEN:
            raise EdgeError(f'open() "{found.path}" failed ({found.reason})', status=403)
        if found.kind == ESCAPED:
            raise EdgeError(f'"{found.path}" is not served: {found.reason}', status=404)
        if found.kind == DIRECTORY:
            raise EdgeError(f'"{found.path}" is a directory', status=404, level="info")
        raise EdgeError(f'open() "{found.path}" failed ({found.reason})', status=404)

    async def _send(self, exchange: Exchange, found: Lookup, uri: str, gzipped: bool) -> None:
        file = found.file
        assert file is not None
        try:
            await self._send_file(exchange, file, uri, gzipped)
        finally:
            file.release()

    async def _send_file(
        self, exchange: Exchange, file: OpenedFile, uri: str, gzipped: bool
    ) -> None:
        request, response = exchange.request, exchange.response
        last_modified = math.floor(file.mtime)
        etag = entity_tag_bytes(last_modified, file.size)
        validators = self._validators(last_modified, etag, time.time())
        verdict = evaluate_conditions(request.method, request.header, etag, last_modified)
        if verdict == 304:
            await response.send_head(304, validators)
            await response.end()
            return
        if verdict == 412:
            raise ClientError("precondition failed", status=412)
        mime = content_type(uri)
        headers = [(b"Content-Type", mime)]
        if gzipped:
            headers.append((b"Content-Encoding", b"gzip"))
        headers.extend(validators)
        headers.append((b"Accept-Ranges", b"bytes"))
        size = file.size
        status, first, count = 200, 0, size
        multipart: MultipartByteranges | None = None
        range_header = request.header(b"range")
        selected = None
        if range_header is not None:
            selected = select_ranges(
                request.method,
                range_header,
                request.header(b"if-range"),
                etag,
                last_modified,
                size,
            )
        if selected is UNSATISFIABLE:
            await self._unsatisfiable(exchange, size, headers)
            return
        if isinstance(selected, tuple):
            status = 206
            if len(selected) == 1:
                first, count = selected[0].first, selected[0].length
                headers.append((b"Content-Range", selected[0].content_range(size).encode()))
            else:
                multipart = multipart_byteranges(
                    selected, size, mime.decode("latin-1"), new_boundary()
                )
                headers[0] = (b"Content-Type", multipart.content_type.encode("ascii"))
                count = multipart.content_length
        headers.append((b"Content-Length", str(count).encode()))
        await response.send_head(status, headers)
        if request.method == "GET" and count:
            if multipart is not None:
                await _send_multipart(response, file, multipart)
            elif file.data is not None:
                await response.send(file.data[first : first + count])
            elif count <= SMALL_FILE:
                data = await read_part(file.fd, first, count)
                if status == 200 and not gzipped and self.cache is not None and self._plain:
                    self._hold(file, uri, data)
                await response.send(data)
            else:
                await response.sendfile(file.fd, first, count)
        await response.end()

    def _hold(self, file: OpenedFile, uri: str, data: bytes) -> None:
        """Keep a whole small file served from the open-file cache in memory, for respond_now."""
        assert self.cache is not None
        second = int(time.time())
        fields = _join_fields(self._ok_headers(file.mtime, file.size, uri, second))
        self.cache.hold(self.file_path(uri), file, data, fields, second)

    async def _unsatisfiable(
        self, exchange: Exchange, size: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        body = special_response_body(416, "Range Not Satisfiable")
        kept = [item for item in headers if item[0] in (b"Last-Modified", b"ETag", b"Vary")]
        await exchange.response.send_head(
            416,
            [
                (b"Content-Type", b"text/html"),
                *kept,
                (b"Content-Range", unsatisfied_range(size).encode("ascii")),
                (b"Content-Length", str(len(body)).encode()),
            ],
        )
        await exchange.response.send(body)
        await exchange.response.end()


async def _send_multipart(
    response: ResponseSink, file: OpenedFile, body: MultipartByteranges
) -> None:
    """The parts of a multipart/byteranges body: heads with ``send``, large parts zero-copy.

    A file held in memory goes out in one write.  From a descriptor, small parts
    are read here and joined with the part heads around them, so a request for
    many small ranges makes few writes; a large part goes through ``sendfile``.
    """
    if file.data is not None:
        await response.send(body.render(file.data))
        return
    pending: list[bytes] = []
    pending_size = 0
    for head, byte_range in body.parts:
        pending.append(head)
        pending_size += len(head)
        if byte_range.length <= SMALL_FILE:
            pending.append(await read_part(file.fd, byte_range.first, byte_range.length))
            pending_size += byte_range.length
            if pending_size < SMALL_FILE:
                continue
            await response.send(b"".join(pending))
        else:
            await response.send(b"".join(pending))
            await response.sendfile(file.fd, byte_range.first, byte_range.length)
        pending.clear()
        pending_size = 0
    pending.append(body.trailer)
    await response.send(b"".join(pending))


def _release(found: Lookup) -> None:
    if found.file is not None:
        found.file.release()
