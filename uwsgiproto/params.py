"""nginx's ``uwsgi_params`` as data, and the vars a proxy sends for one request.

Theory of operation
-------------------
nginx builds a uwsgi request (``ngx_http_uwsgi_create_request``) from two
sources, in this order:

1. every ``uwsgi_param`` line, in configuration order.  An ``if_not_empty``
   param whose value came out empty is skipped; any other param is sent even
   when empty (``CONTENT_LENGTH ""`` for a GET, as nginx does);
2. every client header as ``HTTP_`` + the name upper-cased with ``-`` -> ``_``.
   Repeats are joined with ``", "`` (``Cookie`` with ``"; "``, since nginx
   1.23), in the position of the first one.  A header whose var a param
   already set (``uwsgi_param HTTP_HOST $host``) is dropped, so the param wins.

One deliberate difference: nginx also sends ``HTTP_CONTENT_TYPE`` and
``HTTP_CONTENT_LENGTH`` next to ``CONTENT_TYPE``/``CONTENT_LENGTH``.  PEP 3333
(and ``wsgiref.validate``) forbid those keys and RFC 3875 §4.1.18 lets a
server leave out headers already carried by a meta-variable; real uWSGI
passes them on to the app, so we drop them whenever the param is set, as
gunicorn and waitress do.

``UWSGI_PARAMS`` is nginx's stock ``conf/uwsgi_params`` file; the values are
nginx ``$variable`` templates that the proxy expands (this module knows
nothing of requests, sockets or variables: bytes and strings in, bytes out).

Header names holding ``_`` are dropped, as nginx does by default
(``underscores_in_headers off``): ``X_Forwarded_Proto`` and
``X-Forwarded-Proto`` would both become ``HTTP_X_FORWARDED_PROTO`` and one
could impersonate the other.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from uwsgiproto.errors import VarsTooLarge
from uwsgiproto.packet import MAX_DATASIZE, MODIFIER_WSGI, encode_header


@dataclass(frozen=True, slots=True)
class Param:
    """One ``uwsgi_param NAME VALUE [if_not_empty]`` line; ``value`` is an nginx template."""

    name: str
    value: str
    if_not_empty: bool = False


# nginx conf/uwsgi_params (REFERENCE §2): the set every `include uwsgi_params` sends.
UWSGI_PARAMS: Final[tuple[Param, ...]] = (
    Param("QUERY_STRING", "$query_string"),
    Param("REQUEST_METHOD", "$request_method"),
    Param("CONTENT_TYPE", "$content_type"),
    Param("CONTENT_LENGTH", "$content_length"),
    Param("REQUEST_URI", "$request_uri"),
    Param("PATH_INFO", "$document_uri"),
    Param("DOCUMENT_ROOT", "$document_root"),
    Param("SERVER_PROTOCOL", "$server_protocol"),
    Param("REQUEST_SCHEME", "$scheme"),
    Param("HTTPS", "$https", if_not_empty=True),
    Param("REMOTE_ADDR", "$remote_addr"),
    Param("REMOTE_PORT", "$remote_port"),
    Param("SERVER_PORT", "$server_port"),
    Param("SERVER_NAME", "$server_name"),
)

# Headers that CGI carries as meta-variables of their own (RFC 3875 §4.1.2, §4.1.3).
_CGI_HEADERS: Final = {b"content-type": b"CONTENT_TYPE", b"content-length": b"CONTENT_LENGTH"}

# The table nginx uses to turn a header name into a var name (ngx_http_uwsgi_create_request).
_VAR_NAME: Final = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz-", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def merge_params(base: Iterable[Param], extra: Iterable[Param]) -> tuple[Param, ...]:
    """``base`` with ``extra`` applied: a name already present is replaced in place
    (so a configured ``SERVER_NAME`` is not sent twice), new names are appended."""
    merged: dict[str, Param] = {param.name: param for param in base}
    for param in extra:
        merged[param.name] = param
    return tuple(merged.values())


def header_var_name(name: bytes) -> bytes:
    """``b"x-forwarded-for"`` -> ``b"HTTP_X_FORWARDED_FOR"``."""
    return b"HTTP_" + name.translate(_VAR_NAME)


def request_vars(
    params: Iterable[tuple[str, bytes | str, bool]],
    headers: Iterable[tuple[bytes, bytes]],
    exclude_headers: Collection[bytes] = (),
) -> list[tuple[bytes, bytes]]:
    """The vars nginx sends for a request, in nginx's order.

    ``params`` are ``(name, expanded value, if_not_empty)``; ``headers`` are the
    client's ``(name, value)`` pairs in arrival order (any case);
    ``exclude_headers`` are lower-case names the caller does not forward at all
    (for instance ``transfer-encoding`` once the body has been de-chunked).
    """
    result: list[tuple[bytes, bytes]] = []
    set_by_params: set[bytes] = set()
    for name, value, if_not_empty in params:
        raw_value = value.encode("latin-1") if isinstance(value, str) else value
        if if_not_empty and not raw_value:
            continue
        raw_name = name.encode("ascii")
        result.append((raw_name, raw_value))
        set_by_params.add(raw_name)

    position: dict[bytes, int] = {}  # var name -> index in result, to join repeats
    for header_name, header_value in headers:
        if b"_" in header_name:
            continue
        lowered = header_name.lower()
        if lowered in exclude_headers:
            continue
        var = header_var_name(header_name)
        if var in set_by_params or _CGI_HEADERS.get(lowered) in set_by_params:
            continue
        index = position.get(var)
        if index is None:
            position[var] = len(result)
            result.append((var, header_value))
        else:
            separator = b"; " if lowered == b"cookie" else b", "
            result[index] = (var, result[index][1] + separator + header_value)
    return result


def encode_request(
    pairs: Sequence[tuple[bytes, bytes]],
    modifier1: int = MODIFIER_WSGI,
    modifier2: int = 0,
) -> bytes:
    """Header and vars block as one ``bytes``, built with a single join.

    Raises ``VarsTooLarge`` past 65535 bytes of vars (nginx: "uwsgi request is
    too big"); the message carries the size so the log can say by how much.
    """
    parts: list[bytes] = [b""]
    append = parts.append
    size = 0
    for key, value in pairs:
        key_len = len(key)
        value_len = len(value)
        if value_len > MAX_DATASIZE:
            _too_big_var(key, value_len)
        append(key_len.to_bytes(2, "little"))
        append(key)
        append(value_len.to_bytes(2, "little"))
        append(value)
        size += 4 + key_len + value_len
    if size > MAX_DATASIZE:
        raise VarsTooLarge(
            f"uwsgi request is too big: {size} bytes of vars, over the protocol's {MAX_DATASIZE}"
        )
    parts[0] = encode_header(modifier1, size, modifier2)
    return b"".join(parts)


# Little-endian u16 lengths for the sizes most vars have, built once.
_U16: Final = tuple(n.to_bytes(2, "little") for n in range(4096))


def _u16(n: int) -> bytes:
    return _U16[n] if n < 4096 else n.to_bytes(2, "little")


class VarsEncoder:
    """``encode_request(request_vars(...))`` for one fixed list of params: a proxy's hot path.

    What depends only on the names is done once: each param's length-prefixed
    key, and (memoized per header name, bounded) whether a header is forwarded
    and under which var.  The bytes are the same as the two-step reference,
    which stays the definition (a property test holds them equal).
    """

    __slots__ = ("_params", "_param_names", "_modifier1", "_modifier2", "_headers")

    _MEMO_SIZE = 512

    def __init__(
        self,
        params: Sequence[tuple[str, bool]],
        modifier1: int = MODIFIER_WSGI,
        modifier2: int = 0,
    ) -> None:
        names = [name.encode("ascii") for name, _if_not_empty in params]
        self._params = tuple(
            (name, _u16(len(name)) + name, if_not_empty)
            for name, (_text, if_not_empty) in zip(names, params, strict=True)
        )
        self._param_names = frozenset(names)
        self._modifier1 = modifier1
        self._modifier2 = modifier2
        # header name as received -> what _header() says about it
        self._headers: dict[bytes, tuple[bytes, bytes, tuple[bytes, ...]] | None] = {}

    def _header(self, name: bytes) -> tuple[bytes, bytes, tuple[bytes, ...]] | None:
        """(lower-case name, length-prefixed var, params that override it), or None."""
        found = self._headers.get(name, False)
        if found is not False:
            return found  # type: ignore[return-value]
        entry: tuple[bytes, bytes, tuple[bytes, ...]] | None = None
        if b"_" not in name:
            lowered = name.lower()
            var = header_var_name(name)
            owners = tuple(
                owner for owner in (var, _CGI_HEADERS.get(lowered)) if owner in self._param_names
            )
            entry = (lowered, _u16(len(var)) + var, owners)
        headers = self._headers
        if len(headers) >= self._MEMO_SIZE:
            headers.clear()  # a client choosing header names cannot grow it
        headers[name] = entry
        return entry

    def encode(
        self,
        values: Sequence[bytes | str],
        headers: Iterable[tuple[bytes, bytes]],
        exclude_headers: Collection[bytes] = (),
    ) -> bytes:
        """The packet's header and vars for ``values`` (one per param, in order)."""
        parts: list[bytes] = [b""]
        extend = parts.extend
        size = 0
        skipped: set[bytes] | None = None  # if_not_empty params left out: they override nothing
        for (name, key, if_not_empty), given in zip(self._params, values, strict=True):
            value = given.encode("latin-1") if isinstance(given, str) else given
            if if_not_empty and not value:
                if skipped is None:
                    skipped = set()
                skipped.add(name)
                continue
            value_len = len(value)
            if value_len > MAX_DATASIZE:
                _too_big_var(name, value_len)
            extend((key, _u16(value_len), value))
            size += len(key) + 2 + value_len
        forwarded: dict[bytes, list[bytes]] = {}  # var key -> [lower-case name, value...]
        header = self._header
        for name, value in headers:
            entry = header(name)
            if entry is None:
                continue
            lowered, key, owners = entry
            if owners and (skipped is None or not skipped.issuperset(owners)):
                continue  # a param sets this var
            if exclude_headers and lowered in exclude_headers:
                continue
            values_of = forwarded.get(key)
            if values_of is None:
                forwarded[key] = [lowered, value]
            else:
                values_of.append(value)
        for key, (lowered, *joined) in forwarded.items():
            if len(joined) == 1:
                value = joined[0]
            else:
                value = (b"; " if lowered == b"cookie" else b", ").join(joined)
            value_len = len(value)
            if value_len > MAX_DATASIZE:
                _too_big_var(key[2:], value_len)
            extend((key, _u16(value_len), value))
            size += len(key) + 2 + value_len
        if size > MAX_DATASIZE:
            raise VarsTooLarge(
                f"uwsgi request is too big: {size} bytes of vars, over the protocol's {MAX_DATASIZE}"
            )
        parts[0] = encode_header(self._modifier1, size, self._modifier2)
        return b"".join(parts)


def _too_big_var(name: bytes, value_len: int) -> None:
    raise VarsTooLarge(
        f"uwsgi request is too big: {name[:64].decode('ascii', 'replace')} is"
        f" {value_len} bytes, over the protocol's {MAX_DATASIZE} for one var"
    )
