"""What the receiver reads from a provider's notification before it checks anything: the
account, kind, value and signature in a CCV path, the account and token in a CCNow path (matched
by their last segments), and the CCNow order ids a body mentions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from ..model import CCNOW_ID_PATTERN, normalize_ccnow_id

MAX_HINTS = 100  # CCNow order ids taken from one notification

# A whole word: `1234567890` holds no id.
_CCNOW_ID_HINT = re.compile(rf"\b{CCNOW_ID_PATTERN}\b", re.ASCII)


@dataclass(frozen=True, slots=True)
class CCVPath:
    """`.../notify/ccv/{account}/{kind}/{value}/{sig}`, segments still percent-encoded."""

    account: str
    kind: str
    value: str
    sig: str


@dataclass(frozen=True, slots=True)
class CCNowPath:
    """`.../notify/ccnow/{account}/{token}`, segments still percent-encoded."""

    account: str
    token: str


def parse_notify_path(raw_path: str) -> CCVPath | CCNowPath | None:
    """Match a raw request path by its last segments, whatever prefix a proxy left in front."""
    segments = raw_path.partition("?")[0].split("/")
    if len(segments) >= 7 and segments[-6] == "notify" and segments[-5] == "ccv":
        return CCVPath(*segments[-4:])
    if len(segments) >= 5 and segments[-4] == "notify" and segments[-3] == "ccnow":
        return CCNowPath(*segments[-2:])
    return None


def decode_segment(segment: str) -> str | None:
    """Percent-decode one path segment once; None when empty or not valid UTF-8."""
    try:
        text = unquote(segment, errors="strict")
        # Raw non-UTF-8 bytes in the request line arrive as lone surrogates.
        text.encode("utf-8")
    except UnicodeError:
        return None
    return text or None


def extract_ccnow_ids(body: bytes) -> list[str]:
    """Return the CCNow order ids that appear in a notification body (form, JSON or text)."""
    text = body.decode("utf-8", errors="replace")
    texts = [text]
    if "%" in text or "+" in text:
        texts.append(unquote_plus(text, errors="replace"))
    found: dict[str, None] = {}
    for chunk in texts:
        for match in _CCNOW_ID_HINT.finditer(chunk):
            found[normalize_ccnow_id(match[0])] = None
            if len(found) >= MAX_HINTS:
                return list(found)
    return list(found)
