"""HTTP content codings (RFC 9110 8.4) undone to the end of every stream, within a size bound:
for the bodies the listeners receive and for the providers' answers, which aiohttp leaves as
they came (both turn its decoding off)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from reconciler.model import clipped

# The content codings decoded, by their names in any case (x-gzip is gzip's old name, RFC 9110);
# br and zstd would take optional packages. Any other coding is refused: read as plain bytes, a
# body sent `gzip, gzip` or `compress` lost what it said.
_CODINGS: Final[Mapping[str, str | None]] = {
    "gzip": "gzip",
    "x-gzip": "gzip",
    "deflate": "deflate",
    "identity": None,
}
# What a client of the providers asks for: these alone. aiohttp's own Accept-Encoding offers br
# (zstd) wherever brotli (Python 3.14's zstd) can be imported, which read_body cannot decode.
ACCEPT_ENCODING = "gzip, deflate"
# Codings one body may be sent in, one on another: each costs a pass over up to max_body bytes.
MAX_CODINGS = 4
# gzip members (or deflate streams) one body may join: each costs a decompressor.
MAX_MEMBERS = 64
# How a gzip member begins (RFC 1952 2.3.1): bytes after a whole member that do not are no member.
_GZIP_MAGIC = b"\x1f\x8b"
# The registered codings an error may name (RFC 9110 8.4.1, IANA's registry); any other word
# is `unknown`: the header is the sender's text, and may hold anything, a key among it.
_NAMED = frozenset({*_CODINGS, "compress", "x-compress", "br", "zstd"})
# Codings named in an error, cut to this many characters: the header may be a page long.
_SHOWN = 40


class BodyTooLarge(Exception):
    """The body is longer than the limit (413)."""


class BodyUnreadable(Exception):
    """Broken chunking, bad compression, or a client that went away mid-body (400)."""


def codings_of(headers: Iterable[str]) -> Sequence[str] | None:
    """Return the content codings a body is sent in, in the order they were applied, from its
    `Content-Encoding` headers (each a list; `identity` left out); None when one of them is not
    decoded here, or there are more than MAX_CODINGS."""
    codings: list[str] = []
    for value in headers:
        for word in value.split(","):
            name = word.strip(" \t").lower()
            if not name:
                continue  # an empty list element (RFC 9110 5.6.1)
            if name not in _CODINGS:
                return None
            if (coding := _CODINGS[name]) is not None:
                codings.append(coding)
    return codings if len(codings) <= MAX_CODINGS else None


def answer_decoded(body: bytes, headers: Sequence[str], limit: int) -> bytes:
    """Return a provider's answer as sent in the codings all its `Content-Encoding` headers
    name, decoded, as a received body is. BodyUnreadable names the codings of one not decoded
    here, or that does not decode; BodyTooLarge past `limit` bytes decoded."""
    if not body:
        return body  # a 204's, or a HEAD's: nothing was coded
    try:
        return decoded(body, codings_of(headers), limit, trailing=True)
    except BodyUnreadable:
        raise BodyUnreadable(f"Can not decode content-encoding: {named(headers)}") from None


def named(headers: Iterable[str]) -> str:
    """Return the codings `Content-Encoding` headers name as an error may show them: each a
    registered coding's name, or `unknown`."""
    words = (word.strip(" \t").lower() for value in headers for word in value.split(","))
    shown = ", ".join(word if word in _NAMED else "unknown" for word in words if word)
    return clipped(shown or "unknown", _SHOWN, quoted=False)


def decoded(
    body: bytes, codings: Sequence[str] | None, limit: int, *, trailing: bool = False
) -> bytes:
    """Return a body as sent in `codings`, decoded; BodyUnreadable for a coding not decoded
    here (None), unless every gzip member or deflate stream in it ends where the body does, or
    for a coded body that is empty; BodyTooLarge past `limit` bytes decoded. `trailing`: bytes
    after whole gzip members that begin no member are left out, as browsers and curl leave
    them (a provider's answer: `gzip(json) + b"junk"` was unread, its order id with it)."""
    if codings is None:
        raise BodyUnreadable
    for coding in reversed(codings):
        if not body:
            raise BodyUnreadable  # not even a stream's header
        body = _decoded_once(body, coding, limit, trailing=trailing)
    return body


def _decoded_once(body: bytes, coding: str, limit: int, *, trailing: bool) -> bytes:
    """Return a body decoded from one coding, gzip or deflate.

    aiohttp's own decoder ends a gzip body wherever its bytes stop: a body of `x`, or of the
    bare 10-byte gzip header, decoded to nothing, and the receiver took it. So the listeners
    turn it off (connections.BoundedRunner) and decode here, to the end of the stream."""
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:
        # Raw deflate without the zlib header is sent too; aiohttp tells them apart the same way.
        wbits = zlib.MAX_WBITS if body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    rest = body
    for _ in range(MAX_MEMBERS):
        stream = zlib.decompressobj(wbits)
        try:
            part = stream.decompress(rest, limit + 1 - size)
        except zlib.error:
            raise BodyUnreadable from None
        size += len(part)
        if size > limit:
            raise BodyTooLarge  # stopped one byte past the limit: a bomb costs no more
        if not stream.eof:
            raise BodyUnreadable  # cut short: the stream's end (gzip: its trailer) never came
        parts.append(part)
        rest = stream.unused_data
        if not rest or (trailing and coding == "gzip" and not _GZIP_MAGIC.startswith(rest[:2])):
            return b"".join(parts)
    raise BodyUnreadable
